"""A compactor in its own process, for tests/archive/test_compaction.py: commit a batch, compact, repeat.

It starts its rounds together with the other compactor: it creates GATE/NAME.ready once its
catalog is open and waits for GATE/go, which the test creates when both are ready."""
import sys
import time
from pathlib import Path

from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location


def main(dest: str, name: str, rounds: int, gate: Path) -> None:
    cat = Catalog(open_location(dest), partitions=4)
    (gate / f"{name}.ready").touch()
    while not (gate / "go").exists():
        time.sleep(0.01)
    for r in range(rounds):
        cat.commit(f"{name}-{r}", [CatalogRow(id=f"{name}/{r}/{j}", status="failed", reason=f"r{r}") for j in range(3)])
        compact(cat)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
