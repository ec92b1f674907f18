"""Listing a catalog in ascending id order with bounded memory (`Catalog.rows`).

The recent commits (sorted in memory: bounded by the compaction cadence) are merged with a
scan of every run, newest first winning (`runs.merge_newest_first`); a v1 catalog's hash
partitions are each read whole and sorted. A run that a newer manifest replaced while the
listing read it does not end the listing: it goes on after the last id it gave, from the
newer manifest. See docs/archive-format.md "Catalog (LSM layout)".
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from lbdask.archive.catalog_view import View
from lbdask.archive.manifest import Manifest, Manifests
from lbdask.archive.rows import CatalogRow
from lbdask.archive.runs import RunInfo, RunReader, merge_newest_first
from lbdask.errors import IntegrityError
from lbdask.storage import Location

T = TypeVar("T")


class Catalog(Protocol):
    """What a listing uses of `lbdask.archive.catalog.Catalog` (named here, not imported:
    the catalog imports this module)."""

    loc: Location
    manifests: Manifests
    runs: RunReader

    def view(self) -> View: ...
    def forget_view(self) -> None: ...
    def retrying(self, read: Callable[[], T]) -> T: ...
    def listed_rows(self, found: list[str] | None) -> dict[str, CatalogRow]: ...
    def partition_rows(self, key: str) -> dict[str, CatalogRow]: ...


def rows(cat: Catalog, problems: list[str] | None = None) -> Iterator[CatalogRow]:
    """Every readable row once, in ascending id order: the recent commits (sorted in
    memory) merged with a scan of every run (v1: every partition); one block per run
    in memory. When a compaction replaces a run meanwhile the listing goes on after the
    last id it gave, from the newer manifest.

    A missing or unreadable manifest, batch or index object does not hide the other rows:
    each is described in `problems` (when given) or raised as one IntegrityError at the end.
    """
    found: list[str] = []
    last = None
    while True:
        try:
            for row in _listing(cat, last, found):
                last = row.id
                yield row
            break
        except _Superseded:
            cat.forget_view()
    if problems is not None:
        problems.extend(found)
    elif found:
        raise IntegrityError("; ".join(found))


def _listing(cat: Catalog, after: str | None, found: list[str]) -> Iterator[CatalogRow]:
    try:
        view = cat.retrying(cat.view)
    except IntegrityError as exc:  # a lost manifest: list what the batch objects hold
        lost = [str(exc)]
        view = View(Manifest(), 0, cat.listed_rows(lost))
        _note(found, lost)
    _note(found, view.damage)
    recent = sorted((r for r in view.recent.values() if after is None or r.id > after), key=_id)
    manifest = view.manifest
    if manifest.version == 1:
        files = dict(manifest.files)  # updated when a compaction replaces a partition meanwhile
        index = [_partition_stream(cat, part, files, found, after) for part in sorted(files)]
    else:
        index = [_run_stream(cat, manifest, run, found, after) for run in manifest.runs]
    yield from merge_newest_first([iter(recent), *index])


def _run_stream(cat: Catalog, manifest: Manifest, run: RunInfo, found: list[str],
                after: str | None) -> Iterator[CatalogRow]:
    """A run's rows after `after`; `_Superseded` when it is gone because a newer manifest
    replaced it, a problem in `found` when it is lost or unreadable."""
    try:
        yield from (r for r in cat.runs.scan(run, after) if after is None or r.id > after)
    except FileNotFoundError:
        if cat.manifests.discover(manifest.generation).generation != manifest.generation:
            raise _Superseded from None
        found.append(f"catalog object {cat.loc.path(run.key)} is missing: run `lbdask repair {cat.loc.url}`")
    except IntegrityError as exc:
        found.append(str(exc))


def _partition_stream(cat: Catalog, part: int, files: dict[int, str], found: list[str],
                      after: str | None) -> Iterator[CatalogRow]:
    """A v1 partition's rows after `after`, sorted (read when the merge first needs it)."""
    try:
        rows = cat.retrying(lambda: _current_partition(cat, part, files))
    except IntegrityError as exc:
        found.append(f"index partition {part}: {exc}")
        return
    yield from sorted((r for r in rows.values() if after is None or r.id > after), key=_id)


def _current_partition(cat: Catalog, part: int, files: dict[int, str]) -> dict[str, CatalogRow]:
    """Partition `part` as listed in `files`; when its file is gone because a compaction
    replaced it, `files` is pointed at the newer file before the caller retries."""
    try:
        return cat.partition_rows(files[part])
    except FileNotFoundError:
        newer = cat.manifests.discover()
        if newer is not None and newer.files.get(part) not in (None, files[part]):
            files[part] = newer.files[part]
        raise


def _note(found: list[str], problems: list[str]) -> None:
    """Add `problems` not described yet: a listing resumed after a replaced run meets the
    problems of its first pass again, and may meet new ones (a manifest lost meanwhile)."""
    known = set(found)
    found.extend(p for p in dict.fromkeys(problems) if p not in known)


def _id(row: CatalogRow) -> str:
    return row.id


class _Superseded(Exception):
    """A run a listing was reading was replaced by a newer manifest: go on from there."""
