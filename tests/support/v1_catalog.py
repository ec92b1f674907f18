"""A catalog as lbdask wrote it before catalog v2 (issue 25): hash partitions named by a v1
manifest, folded copies, batch objects not yet folded, and no commit log or hint. Written
byte for byte in that format, so tests can check that such archives read, list and convert."""
import json

from lbdask.archive.catalog import partition_of
from lbdask.archive.objects import put_atomic
from lbdask.archive.rows import CatalogRow, dump_rows
from lbdask.storage import Location


def write_v1_catalog(loc: Location, folded: dict[str, list[CatalogRow]], unfolded: dict[str, list[CatalogRow]] = (),
                     partitions: int = 8, generation: int = 1, legacy: bool = False) -> dict[str, CatalogRow]:
    """Write `folded` batches into v1 index generation `generation` (or, `legacy`, the one mutable
    manifest of archives from before generations) and `unfolded` ones as batch objects; returns
    every row by id as a reader must see it."""
    index: dict[str, CatalogRow] = {}
    for name, rows in folded.items():
        for row in rows:
            row.batch_id = name
            index[row.id] = row
        put_atomic(loc, loc.path("catalog", "folded", f"{name}.jsonl.gz"), dump_rows(rows))
    by_part: dict[int, list[CatalogRow]] = {}
    for image_id in sorted(index):
        by_part.setdefault(partition_of(image_id, partitions), []).append(index[image_id])
    files = {}
    for part, rows in sorted(by_part.items()):
        files[str(part)] = f"catalog/index/g{generation:06d}-0123456789ab/p{part:05d}.jsonl.gz"
        put_atomic(loc, loc.path(files[str(part)]), dump_rows(rows))
    manifest = {"generation": generation, "partitions": partitions, "files": files, "folded": list(folded)}
    where = ("catalog", "index", "manifest.json") if legacy else ("catalog", "manifests", f"{generation:010d}.json")
    put_atomic(loc, loc.path(*where), json.dumps(manifest, indent=1).encode())
    for name, rows in dict(unfolded).items():
        for row in rows:
            row.batch_id = name
            index[row.id] = row
        put_atomic(loc, loc.path("catalog", "batches", f"{name}.jsonl.gz"), dump_rows(rows))
    return index
