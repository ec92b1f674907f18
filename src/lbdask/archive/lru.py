"""A small thread-safe LRU map: the footer, partition and block caches of `runs.RunReader`."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A thread-safe least-recently-used map of at most `capacity` entries."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def load(self, key: K, read: Callable[[], V], keep: bool = True) -> V:
        """The cached value of `key`, else `read()` (kept in the cache unless `keep` is false)."""
        value = self.get(key)
        if value is None:
            value = read()
            with self._lock:
                if keep:
                    self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return value
