"""The catalog's batch objects found by listing their folders (`catalog/batches/`,
`catalog/folded/`), not by the commit log: what compaction, repair, the retier sweep and a
catalog without a manifest yet (or still in the v1 layout) read. A lookup on a compacted
catalog never lists (catalog_view.py). See docs/archive-format.md "Catalog (LSM layout)".
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from lbdask.archive.reads import read_object
from lbdask.archive.rows import CatalogRow, parse_rows
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: The name ending of a batch object and of its folded copy.
BATCH_SUFFIX = ".jsonl.gz"


class Catalog(Protocol):
    """What these readers use of `lbdask.archive.catalog.Catalog` (named here, not imported:
    the catalog imports this module)."""

    loc: Location

    def confirm(self) -> None: ...
    def batch_names(self) -> list[str]: ...
    def folded_names(self) -> list[str]: ...
    def batch_rows(self, batch_id: str) -> dict[str, CatalogRow]: ...
    def folded_path(self, batch_id: str) -> str: ...


def listed_batches(loc: Location, folder: str) -> list[str]:
    """Batch ids of the objects under `folder`, its fan-out subfolders included (one
    recursive LIST), sorted."""
    loc.fs.invalidate_cache(folder)
    try:
        names = [p.rsplit("/", 1)[-1] for p in loc.fs.find(folder)]
    except FileNotFoundError:
        return []
    return sorted({n[: -len(BATCH_SUFFIX)] for n in names if n.endswith(BATCH_SUFFIX)})


def anything_in(loc: Location, folder: str) -> bool:
    """Whether `folder` holds anything (one LIST of the folder itself)."""
    loc.fs.invalidate_cache(folder)
    try:
        return bool(loc.fs.ls(folder, detail=False))
    except FileNotFoundError:
        return False


def listed_rows(cat: Catalog, found: list[str] | None) -> dict[str, CatalogRow]:
    """Rows of every batch object on the store (one LIST; later batch names win), the
    unreadable ones described in `found` (when given)."""
    recent: dict[str, CatalogRow] = {}
    for name in cat.batch_names():
        try:
            recent.update(cat.batch_rows(name))
        except (IntegrityError, FileNotFoundError) as exc:
            if found is not None:
                found.append(str(exc))
    return recent


def committed_rows(cat: Catalog, unfolded: list[CatalogRow] | None = None) -> Iterator[CatalogRow]:
    """Every row of every committed batch, superseded ones included: the batch objects
    (their rows also appended to `unfolded`), then the folded copies (listed second, so a
    batch folded meanwhile is still seen). A folded copy that cannot be read is skipped: its
    rows are then not known to this listing (the retier sweep leaves their data alone)."""
    pending = cat.batch_names()
    folded = cat.folded_names()
    if not pending and not folded:
        cat.confirm()
    for name in pending:
        try:
            rows = list(cat.batch_rows(name).values())
        except FileNotFoundError:  # folded since listed; its copy was written before the delete
            folded.append(name)
            continue
        if unfolded is not None:
            unfolded.extend(rows)
        yield from rows
    for name in sorted(set(folded)):
        path = cat.folded_path(name)
        try:
            yield from parse_rows(path, read_object(cat.loc, path))
        except (FileNotFoundError, IntegrityError):
            continue
