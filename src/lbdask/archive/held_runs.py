"""Small runs held whole by a catalog handle: one read gives a run's footer, every index partition
and every block, so the run costs a handle one request in its lifetime, not a footer read and
then a read per index partition or block (docs/archive-format.md, "Sorted runs").

The small runs are the ones that change most often (the level-0 runs every fold adds, the
level-1 run their merges rewrite); the larger levels are read a partition at a time. Runs are
immutable, so held bytes never go stale; a run merged away is dropped by the LRU.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

#: A run of at most this many bytes is read whole the first time a handle needs it: a level-1
#: run (at most 16,000 rows, `levels.plan_merge`) of kept rows (~107 bytes each: ~1.7 MB) fits,
#: so only runs of level 2 and up are read a partition at a time.
WHOLE_RUN_BYTES = 2 << 20
#: Bytes of whole runs one handle keeps (LRU): the four level-0 runs and the level-1 run of a
#: manifest, with room for the ones that replace them.
HELD_BYTES = 16 << 20


def too_large(size: int) -> bool:
    """Whether a run of `size` bytes is read a partition at a time wherever it lies (on an object
    store, smaller runs are held whole; `RunReader.holds`)."""
    return size > WHOLE_RUN_BYTES


class HeldRuns:
    """Whole run objects by path, least recently used dropped beyond `budget` bytes; thread-safe."""

    def __init__(self, budget: int = HELD_BYTES) -> None:
        self.budget = budget
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._blobs

    def add(self, path: str, blob: bytes) -> None:
        with self._lock:
            if path in self._blobs:
                return
            self._blobs[path] = blob
            self._bytes += len(blob)
            while self._bytes > self.budget and len(self._blobs) > 1:
                self._bytes -= len(self._blobs.popitem(last=False)[1])

    def slice(self, path: str, start: int, size: int) -> bytes | None:
        """Bytes [start, start + size) of a held run (fewer at its end, as a read would return),
        None when the run is not held."""
        with self._lock:
            blob = self._blobs.get(path)
            if blob is None:
                return None
            self._blobs.move_to_end(path)
        return blob[start:start + size]
