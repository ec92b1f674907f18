"""A catalog snapshot for serving: lookups pinned to one generation, no store request when warm.

A snapshot pins one catalog view (`catalog_view.py`): a manifest and the rows of the log
slots after it. Index objects are read once on first use and kept (they are immutable:
run footers and recently used blocks in the catalog's run reader, v1 partitions here).
`refresh()` advances the view by probing the next log slot (no LIST)
and pins a new one only when something changed; lookups call it themselves once `max_age`
seconds have passed, so a reader sees new commits at most that late. Safe to share
between threads: the pinned state is swapped in one assignment and the cache is locked.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from lbdask.archive.catalog import Catalog, partition_of
from lbdask.archive.catalog_view import View
from lbdask.archive.rows import CatalogRow


@dataclass(frozen=True)
class _Pinned:
    view: View
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
        return self._current().view.manifest.generation

    def refresh(self) -> bool:
        """Pin the latest generation and recent commits; True if anything changed."""
        pinned = self._pinned
        view = self.catalog.retrying(self.catalog.view)
        if pinned is not None and view is pinned.view:
            self._pinned = _Pinned(view, time.monotonic(), pinned.partitions)
            return False
        self._pinned = _Pinned(view, time.monotonic())
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
        except FileNotFoundError:  # a compaction replaced the pinned index: pin the new generation
            with self._lock:
                self.catalog.retrying(self.catalog.refresh)
                self.refresh()
            return self.catalog.retrying(lambda: self._get_row(self._current(), image_id))

    def _get_row(self, pinned: _Pinned, image_id: str) -> CatalogRow | None:
        row = pinned.view.recent.get(image_id)
        if row is not None:
            return row
        manifest = pinned.view.manifest
        if manifest.version == 2:  # the catalog's run reader keeps footers and recent blocks
            return self.catalog.indexed(manifest, image_id)
        key = manifest.files.get(partition_of(image_id, manifest.partitions))
        if key is None:
            return None
        rows = pinned.partitions.get(key)
        if rows is None:
            rows = self.catalog.partition_rows(key)
            with self._lock:
                pinned.partitions[key] = rows
        return rows.get(image_id)
