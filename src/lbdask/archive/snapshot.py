"""A catalog snapshot for serving: lookups pinned to one generation, no store request when warm.

A snapshot holds the manifest of one generation and the rows of the batch objects that were
not yet folded when it was taken. Partitions are read once on first use and kept (they are
immutable). `refresh()` takes a new snapshot when the generation or the set of unfolded
batches changed (one LIST of each); lookups call it themselves once `max_age` seconds
have passed, so a reader sees new commits at most that late. Safe to share between threads:
the pinned state is swapped in one assignment and the partition cache is locked.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from lbdask.archive.catalog import Catalog, partition_of
from lbdask.archive.manifest import Manifest
from lbdask.archive.rows import CatalogRow


@dataclass(frozen=True)
class _Pinned:
    manifest: Manifest
    batches: tuple[str, ...]
    recent: dict[str, CatalogRow]  # rows of the unfolded batches, newest batch winning
    taken: float
    partitions: dict[str, dict[str, CatalogRow]] = field(default_factory=dict)


class CatalogSnapshot:
    """Thread-safe lookups against one pinned catalog generation."""

    def __init__(self, catalog: Catalog, max_age: float = 30.0) -> None:
        self.catalog = catalog
        self.max_age = max_age
        self._lock = threading.Lock()
        self._pinned: _Pinned | None = None

    @property
    def generation(self) -> int:
        return self._current().manifest.generation

    def _take(self) -> _Pinned:
        def read() -> _Pinned:
            names = self.catalog.batch_names()  # before the manifest, as Catalog.get_row
            recent: dict[str, CatalogRow] = {}
            for name in names:
                recent.update(self.catalog.batch_rows(name))
            return _Pinned(self.catalog.manifest(), tuple(names), recent, time.monotonic())

        return self.catalog.retrying(read)

    def refresh(self) -> bool:
        """Pin the latest generation and unfolded batches; True if anything changed."""
        pinned = self._pinned
        if pinned is not None:
            gens = self.catalog.manifests.generations()
            if gens[-1:] == [pinned.manifest.generation] and tuple(self.catalog.batch_names()) == pinned.batches:
                self._pinned = _Pinned(pinned.manifest, pinned.batches, pinned.recent, time.monotonic(),
                                       pinned.partitions)
                return False
        self._pinned = self._take()
        return True

    def _current(self) -> _Pinned:
        pinned = self._pinned
        if pinned is None or time.monotonic() - pinned.taken > self.max_age:
            with self._lock:  # one refresher; the others wait and then use its result
                if self._pinned is pinned:
                    self.refresh()
            pinned = self._pinned
        assert pinned is not None
        return pinned

    def get_row(self, image_id: str) -> CatalogRow | None:
        """The row of `image_id` as of the pinned generation (a newer one if that was removed)."""
        try:
            return self._get_row(self._current(), image_id)
        except FileNotFoundError:  # a compaction replaced the pinned partition: pin the new generation
            with self._lock:
                self.refresh()
            return self.catalog.retrying(lambda: self._get_row(self._current(), image_id))

    def _get_row(self, pinned: _Pinned, image_id: str) -> CatalogRow | None:
        row = pinned.recent.get(image_id)
        if row is not None:
            return row
        key = pinned.manifest.files.get(partition_of(image_id, pinned.manifest.partitions))
        if key is None:
            return None
        rows = pinned.partitions.get(key)
        if rows is None:
            rows = self.catalog.partition_rows(key)
            with self._lock:
                pinned.partitions[key] = rows
        return rows.get(image_id)
