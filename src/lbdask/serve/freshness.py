"""Cached reads follow catalog changes: an id's cache entry lives at most one refresh interval
longer than its catalog row.

The serving cache keeps each id's row and bytes (its latent, kept PNG or pixel copy, or the
decoded image). `lbdask retier` changes rows under it: a re-encode gives an id a latent of
another model, a demote turns a kept PNG into a latent, a promote adds a pixel copy and the
sweep then deletes the objects no row references. Rows are never rewritten in place: every
change is a new committed catalog batch (docs/archive-format.md), and compaction moves a batch
to `catalog/folded/` without changing it. So every `catalog_refresh_s` a background thread
lists `catalog/batches/` and the manifest generations of each archive this worker serves
(two small LISTs; `catalog/folded/`, one name per batch ever committed, only after a
compaction made a new generation, which a batch committed and folded within one interval
needs), reads the rows of the batches it has not seen yet and drops those ids from the
cache; the next read fetches the current row. `version` counts the passes that dropped anything, so a read that looked its id
up before a pass does not put what it got back into the cache.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from lbdask.archive import Archive
from lbdask.archive.catalog import parse_rows

logger = logging.getLogger(__name__)

#: Called with (dest, ids) for the ids of newly seen catalog batches of archive `dest`.
Drop = Callable[[str, set[str]], None]


@dataclass
class Watched:
    """One archive a worker serves: the batches and manifest generations seen so far."""

    dest: str
    archive: Archive
    batches: set[str] = field(default_factory=set)
    generations: list[int] | None = None  # None: not listed yet (the first listing includes catalog/folded/)

    def changes(self) -> tuple[list[str], list[int]]:
        """Committed batches not seen before (folded or not), and the generations listed."""
        catalog = self.archive.catalog
        gens = catalog.manifests.generations()  # listed first: a fold after it is seen next time
        names = set(catalog.batch_names())
        if gens != self.generations:  # a compaction ran: a batch may have been committed and folded since
            names |= set(catalog.folded_names())
        return sorted(names - self.batches), gens

    def remember(self, new: list[str], generations: list[int]) -> None:
        self.batches.update(new)
        self.generations = generations


def batch_ids(archive: Archive, name: str) -> set[str]:
    """The ids a committed batch holds rows for (from the batch object, or its folded copy)."""
    catalog, fs = archive.catalog, archive.loc.fs
    for path in (catalog.batch_path(name), catalog.folded_path(name)):
        try:
            return {r.id for r in parse_rows(path, fs.cat_file(path))}
        except FileNotFoundError:  # folded meanwhile: its copy is under catalog/folded/
            continue
    raise FileNotFoundError(catalog.batch_path(name))


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
        watched.remember(*watched.changes())
        with self._lock:
            self._known.setdefault(ident, watched)

    def check(self) -> int:
        """One pass over every watched archive; returns how many ids it dropped."""
        with self._check_lock:
            with self._lock:
                watched = list(self._known.values())
            dropped = 0
            for w in watched:
                try:
                    new, gens = w.changes()
                    ids = set().union(*(batch_ids(w.archive, name) for name in new))
                except Exception as exc:  # noqa: BLE001 - the serving path must not die of a store hiccup
                    logger.warning("lbdask: catalog of %s not checked for changes: %s", w.dest, exc)
                    continue  # the same batches are new again next time
                w.remember(new, gens)
                if ids:
                    self._drop(w.dest, ids)
                    self.version += 1  # after the drop: a read that looked up before it does not fill
                    dropped += len(ids)
            self.dropped += dropped
            return dropped

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)  # only waits for a pass already under way
