"""Cached reads follow catalog changes: an id's cache entry lives at most one refresh interval
longer than its catalog row.

The serving cache keeps each id's row and bytes (its latent, kept PNG or pixel copy, or the
decoded image). `lbdask retier` changes rows under it: a re-encode gives an id a latent of
another model, a demote turns a kept PNG into a latent, a promote adds a pixel copy and the
sweep then deletes the objects no row references. Rows are never rewritten in place: every
change is a new committed catalog batch (docs/archive-format.md), and compaction moves a batch
to `catalog/folded/` without changing it. So every `catalog_refresh_s` a background thread
lists both folders of each archive this worker serves (two LISTs), reads the rows of the
batches it has not seen yet and drops those ids from the cache; the next read fetches the
current row. `version` counts the passes that dropped anything, so a read that looked its id
up before a pass does not put what it got back into the cache.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from lbdask.archive import Archive
from lbdask.archive.catalog import parse_rows

logger = logging.getLogger(__name__)

#: Called with (dest, ids) for the ids of newly seen catalog batches of archive `dest`.
Drop = Callable[[str, set[str]], None]


def committed_batches(archive: Archive) -> set[str]:
    """Every committed batch of `archive`, folded into the index or not (two LISTs)."""
    catalog = archive.catalog
    return set(catalog.batch_names()) | set(catalog.folded_names())


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
        self._known: dict[str, tuple[str, Archive, set[str]]] = {}  # ident -> (dest, archive, batches seen)
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
        seen = committed_batches(archive)
        with self._lock:
            self._known.setdefault(ident, (dest, archive, seen))

    def check(self) -> int:
        """One pass over every watched archive; returns how many ids it dropped."""
        with self._check_lock:
            with self._lock:
                watched = list(self._known.values())
            dropped = 0
            for dest, archive, seen in watched:
                try:
                    new = sorted(committed_batches(archive) - seen)
                    ids = set().union(*(batch_ids(archive, name) for name in new))
                except Exception as exc:  # noqa: BLE001 - the serving path must not die of a store hiccup
                    logger.warning("lbdask: catalog of %s not checked for changes: %s", dest, exc)
                    continue
                if ids:
                    self._drop(dest, ids)
                    self.version += 1  # after the drop: a read that looked up before it does not fill
                    dropped += len(ids)
                seen.update(new)
            self.dropped += dropped
            return dropped

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)  # only waits for a pass already under way
