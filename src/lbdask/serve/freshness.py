"""Cached reads follow catalog changes: an id's cache entry lives at most one refresh interval
longer than its catalog row.

The serving cache keeps each id's row and bytes (its latent, kept PNG or pixel copy, or the
decoded image). `lbdask retier` changes rows under it: a re-encode gives an id a latent of
another model, a demote turns a kept PNG into a latent, a promote adds a pixel copy and the
sweep then deletes the objects no row references. Rows are never rewritten in place: every
change is a new committed catalog batch, announced in the next slot of the commit log
(docs/archive-format.md "Catalog (LSM layout)"), and compaction moves a batch to
`catalog/folded/` without changing it. So every `catalog_refresh_s` a background thread reads
the log slots of each archive this worker serves from where its last pass stopped (one GET
that 404s, and one HEAD of the slot before it, when nothing changed; never a LIST), reads the
rows of the batches they announce and drops those ids from the cache; the next read fetches
the current row. `version` counts the passes that dropped anything, so a read that looked its
id up before a pass does not put what it got back into the cache.

Log slots are never deleted by this lbdask, but an archive also written by an older one may
lose slots the watch had not read yet (that compaction deleted its folded slots). The watch
notices (the slot before its position is gone) and drops the ids of every batch the
generations since its own folded (their manifests' `folded` lists); when one of those
manifests was pruned meanwhile it drops every id of the archive (rare; a listing of the
catalog, in chunks).
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lbdask.archive import Archive
from lbdask.archive.rows import parse_rows
from lbdask.archive.commit_log import read_slot, slot_path
from lbdask.archive.reads import present, read_object

logger = logging.getLogger(__name__)

#: Called with (dest, ids) for the ids of newly seen catalog batches of archive `dest`.
Drop = Callable[[str, set[str]], None]
#: Ids per call of `Drop` when every id of an archive is dropped.
DROP_ALL_CHUNK = 10_000


@dataclass
class Watched:
    """One archive a worker serves: where its commit log was read up to."""

    dest: str
    archive: Archive
    end: int = 0  # the next log slot to read
    generation: int = 0  # the newest generation whose log the watch reached

    def start(self) -> None:
        """Start at the log's end: what is committed now is what the first reads will see."""
        view = self.archive.catalog.view()
        self.end, self.generation = view.end, view.manifest.generation

    def changes(self) -> tuple[list[str] | None, int, int]:
        """(the batches announced since the last pass, or None when the watch fell behind and
        must drop every id; the slot to read next; the generation reached)."""
        names: list[str] = []
        end, generation = self._read_on(names, self.end, self.generation)
        if end > self.end or self._intact(end, generation):
            return names, end, generation
        # slots gone before this watch read them: the catalog's own view may be stuck on them too
        manifests, newest = self.archive.catalog.manifests, self.archive.catalog.refresh().manifest
        if newest.generation <= generation:  # deleted by hand, not by a compaction: nothing to catch up
            return names, end, generation
        try:
            names = [name for g in range(generation + 1, newest.generation + 1) for name in manifests.read(g).folded]
        except FileNotFoundError:  # a manifest in between was pruned: which batches it folded is lost
            return None, max(end, newest.log_next), newest.generation
        end, generation = self._read_on(names, max(end, newest.log_next), newest.generation)
        return names, end, generation

    def _read_on(self, names: list[str], end: int, generation: int) -> tuple[int, int]:
        """Read slots from `end` to the first absent one, adding the batches they announce to
        `names`; returns (that slot, the generation reached)."""
        while (slot := read_slot(self.archive.catalog.log, end)) is not None:
            if slot.batch is not None:
                names.append(slot.batch)
            elif slot.fence is not None and slot.fence > generation:
                generation = self._reached(slot.fence, end + 1, generation)
            end += 1
        return end, generation

    def _intact(self, end: int, generation: int) -> bool:
        """Whether nothing was deleted at `end` (one HEAD): the slot before it is still there (an
        older lbdask deleted folded slots oldest first); at slot 0, no compaction wrote its hint
        (an archive never compacted), or no generation after the one known."""
        loc, manifests = self.archive.loc, self.archive.catalog.manifests
        if end > 0:
            return present(loc, slot_path(self.archive.catalog.log, end - 1))
        return not present(loc, manifests.hint_path() if generation == 0 else manifests.path(generation + 1))

    def _reached(self, fence: int, end: int, generation: int) -> int:
        """`fence`'s generation once its manifest exists and starts at or before `end` (a fence
        of a compaction that crashed, or has not committed yet, changes nothing)."""
        try:
            manifest = self.archive.catalog.manifests.read(fence)
        except FileNotFoundError:
            return generation
        return fence if manifest.log_next <= end else generation


def batch_ids(archive: Archive, name: str) -> set[str]:
    """The ids a committed batch holds rows for (from the batch object, or its folded copy)."""
    catalog = archive.catalog
    for path in (catalog.batch_path(name), catalog.folded_path(name)):
        try:
            return {r.id for r in parse_rows(path, read_object(archive.loc, path))}
        except FileNotFoundError:  # folded meanwhile: its copy is under catalog/folded/
            continue
    raise FileNotFoundError(catalog.batch_path(name))


def _every_id(archive: Archive) -> Iterable[set[str]]:
    """Every id of the archive's catalog, in chunks of DROP_ALL_CHUNK."""
    ids = (row.id for row in archive.rows())
    while chunk := set(itertools.islice(ids, DROP_ALL_CHUNK)):
        yield chunk


class CatalogWatch:
    """Per worker: the archives it serves, checked for new catalog batches every `interval_s`."""

    def __init__(self, interval_s: float, drop: Drop) -> None:
        self.interval_s = interval_s
        self._drop = drop
        self._known: dict[str, Watched] = {}  # archive ident (dest + storage options) -> its state
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self.version = 0   # passes that dropped ids (a fetch older than a pass does not fill)
        self.dropped = 0   # ids dropped over the worker's life (metrics)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lbdask-catalog-watch", daemon=True)
        self._thread.start()

    def add(self, ident: str, dest: str, archive: Archive) -> None:
        """Start watching `archive` (just opened, before any of its rows is read): the batches
        committed now are what its first reads will see."""
        watched = Watched(dest, archive)
        watched.start()
        with self._lock:
            self._known.setdefault(ident, watched)

    def check(self) -> int:
        """One pass over every watched archive; returns how many ids it dropped."""
        with self._check_lock:
            with self._lock:
                watched = list(self._known.values())
            dropped = sum(self._check(w) for w in watched)
            self.dropped += dropped
            return dropped

    def _check(self, w: Watched) -> int:
        """One archive's pass: drop the ids of the batches announced since the last one."""
        try:
            names, end, generation = w.changes()
            chunks = _every_id(w.archive) if names is None else [set().union(*(batch_ids(w.archive, n) for n in names))]
            dropped = 0
            for ids in chunks:
                if ids:
                    self._drop(w.dest, ids)
                    self.version += 1  # after the drop: a read that looked up before it does not fill
                    dropped += len(ids)
        except Exception as exc:  # noqa: BLE001 - the serving path must not die of a store hiccup
            logger.warning("lbdask: catalog of %s not checked for changes: %s", w.dest, exc)
            return 0  # the same slots are new again next time
        w.end, w.generation = end, generation
        return dropped

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)  # only waits for a pass already under way
