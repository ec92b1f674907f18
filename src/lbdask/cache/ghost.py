"""Byte-bounded ghost list of a tier: ids and sizes of the objects it evicted, oldest first.

The marginal-hit tuner's probe beyond a tier's capacity (src/lbdask/cache/tuner.py): a lookup found
here would have hit had the tier been up to `capacity` bytes larger.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class GhostList:
    """FIFO of (key, size) holding at most `capacity` bytes; capacity 0 keeps nothing."""

    def __init__(self, capacity: int = 0) -> None:
        self._keys: OrderedDict[Hashable, int] = OrderedDict()
        self.bytes = 0
        self.capacity = 0
        self.resize(capacity)

    def resize(self, capacity: int) -> None:
        """Set the byte budget, dropping the oldest entries over it."""
        self.capacity = capacity
        self._trim()

    def add(self, key: Hashable, size: int) -> None:
        """Remember an evicted object (newest)."""
        if self.capacity <= 0:
            return
        old = self._keys.pop(key, None)
        if old is not None:
            self.bytes -= old
        self._keys[key] = size
        self.bytes += size
        self._trim()

    def pop(self, key: Hashable) -> bool:
        """Forget `key`; True if it was remembered (a ghost hit)."""
        size = self._keys.pop(key, None)
        if size is None:
            return False
        self.bytes -= size
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def _trim(self) -> None:
        while self.bytes > self.capacity:
            _, size = self._keys.popitem(last=False)
            self.bytes -= size
