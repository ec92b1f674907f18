"""A compactor in its own process, for tests/archive/test_compaction.py: commit a batch, compact, repeat."""
import sys
import time

from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location


def main(dest: str, name: str, rounds: int, start_at: float) -> None:
    cat = Catalog(open_location(dest), partitions=4)
    time.sleep(max(0.0, start_at - time.time()))  # start together with the other compactor
    for r in range(rounds):
        cat.commit(f"{name}-{r}", [CatalogRow(id=f"{name}/{r}/{j}", status="failed", reason=f"r{r}") for j in range(3)])
        compact(cat)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
