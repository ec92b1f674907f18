"""One byte-accounted cache tier: a policy-managed main segment plus a FIFO tail segment.

Objects the main segment evicts enter the tail; objects the tail evicts leave the tier
(and enter its `ghost` list, which keeps nothing unless the tuner gives it bytes).
A hit in the tail re-admits the object to the main segment and is reported as a *tail
hit*: it would have been a miss had the tier been tau smaller (paper section 4.3).
All operations are O(1) (amortised over evictions); the owning cache holds the lock.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

from lbdask.cache.capacity import small_capacity, tail_capacity
from lbdask.cache.ghost import GhostList
from lbdask.cache.promotion import early_hit


class Entry:
    """A cached value with its byte size, hit counter since admission, S3-FIFO frequency and
    `extra`: image minus latent bytes of the object (what promoting it adds)."""

    __slots__ = ("value", "size", "hits", "freq", "extra")

    def __init__(self, value: Any, size: int, hits: int = 0, extra: int = 0) -> None:
        self.value = value
        self.size = size
        self.hits = hits
        self.freq = 0
        self.extra = extra


class SegmentedTier:
    """Main segment + tail segment; subclasses supply the main segment's policy."""

    def __init__(self, capacity: int, tail_fraction: float) -> None:
        self.tail_fraction = tail_fraction
        self._tail: OrderedDict[Hashable, Entry] = OrderedDict()   # oldest first
        self.tail_bytes = 0
        self.ghost = GhostList()
        self.early_bytes = 0      # sum of `extra` over entries with promotion.early_hit(hits)
        self.capacity = self.main_capacity = self.tail_capacity = 0
        self.resize(capacity)

    # -- policy hooks -----------------------------------------------------------------
    def _set_main_capacity(self) -> None:
        """React to a new main_capacity (e.g. trim a ghost queue)."""

    def _main_find(self, key: Hashable) -> Entry | None:
        raise NotImplementedError

    def _main_insert(self, key: Hashable, entry: Entry, hot: bool) -> None:
        raise NotImplementedError

    def _main_hit(self, key: Hashable, entry: Entry) -> None:
        raise NotImplementedError

    def _main_remove(self, key: Hashable) -> Entry | None:
        raise NotImplementedError

    def _main_evict(self) -> Iterator[tuple[Hashable, Entry]]:
        """Yield the objects the main segment drops until it fits main_capacity."""
        raise NotImplementedError

    @property
    def main_bytes(self) -> int:
        raise NotImplementedError

    # -- tier operations -------------------------------------------------------------
    @property
    def used(self) -> int:
        """Bytes held by the tier (main + tail)."""
        return self.main_bytes + self.tail_bytes

    def fits(self, size: int) -> bool:
        """Whether an object of this size can be admitted at all."""
        return size <= self.main_capacity

    def resize(self, capacity: int) -> None:
        """Set the tier's byte budget and evict any overflow immediately."""
        self.capacity = capacity
        self.tail_capacity = tail_capacity(capacity, self.tail_fraction)
        self.main_capacity = capacity - self.tail_capacity
        self._set_main_capacity()
        self._overflow()

    def get(self, key: Hashable) -> tuple[Entry, bool] | None:
        """Look up and touch `key`: (entry, tail_hit), or None when absent."""
        entry = self._tail.pop(key, None)
        if entry is not None:
            self.tail_bytes -= entry.size
            self._main_insert(key, entry, hot=True)
            self._overflow()
            return entry, True
        entry = self._main_find(key)
        if entry is None:
            return None
        self._main_hit(key, entry)
        return entry, False

    def insert(self, key: Hashable, entry: Entry) -> None:
        """Admit a new object (the caller checked `fits` and that `key` is absent)."""
        entry.freq = 0
        self.early_bytes += entry.extra * early_hit(entry.hits)
        self._main_insert(key, entry, hot=False)
        self._overflow()

    def remove(self, key: Hashable) -> Entry | None:
        """Take `key` out of the tier, wherever it is."""
        entry = self._tail.pop(key, None)
        if entry is not None:
            self.tail_bytes -= entry.size
        else:
            entry = self._main_remove(key)
        if entry is not None:
            self.early_bytes -= entry.extra * early_hit(entry.hits)
        return entry

    def peek(self, key: Hashable) -> Entry | None:
        """The entry of `key` without touching recency or frequency."""
        entry = self._tail.get(key)
        return entry if entry is not None else self._main_find(key)

    def __contains__(self, key: Hashable) -> bool:
        return self.peek(key) is not None

    def _overflow(self) -> None:
        for key, entry in self._main_evict():
            self._tail[key] = entry
            self.tail_bytes += entry.size
        while self.tail_bytes > self.tail_capacity:
            key, entry = self._tail.popitem(last=False)
            self.tail_bytes -= entry.size
            self.early_bytes -= entry.extra * early_hit(entry.hits)
            self.ghost.add(key, entry.size)


class LRUTier(SegmentedTier):
    """Main segment in least-recently-used order: the paper's policy."""

    def __init__(self, capacity: int, tail_fraction: float) -> None:
        self._main: OrderedDict[Hashable, Entry] = OrderedDict()   # least recent first
        self._main_bytes = 0
        super().__init__(capacity, tail_fraction)

    @property
    def main_bytes(self) -> int:
        return self._main_bytes

    def _main_find(self, key: Hashable) -> Entry | None:
        return self._main.get(key)

    def _main_insert(self, key: Hashable, entry: Entry, hot: bool) -> None:
        self._main[key] = entry
        self._main_bytes += entry.size

    def _main_hit(self, key: Hashable, entry: Entry) -> None:
        self._main.move_to_end(key)

    def _main_remove(self, key: Hashable) -> Entry | None:
        entry = self._main.pop(key, None)
        if entry is not None:
            self._main_bytes -= entry.size
        return entry

    def _main_evict(self) -> Iterator[tuple[Hashable, Entry]]:
        while self._main_bytes > self.main_capacity:
            key, entry = self._main.popitem(last=False)
            self._main_bytes -= entry.size
            yield key, entry


class S3FIFOTier(SegmentedTier):
    """Main segment as S3-FIFO: small FIFO S, main FIFO M with reinsertion, ghost FIFO G.

    New objects enter S (or M if their key is in G); an object leaving S with at least
    `move_after` hits goes to M, otherwise to G (keys only); M reinserts objects with a
    nonzero frequency (decremented). Re-admissions from the tail count as hot and enter M.
    """

    def __init__(self, capacity: int, tail_fraction: float, small_fraction: float = 0.10,
                 move_after: int = 1) -> None:
        self.small_fraction = small_fraction
        self.move_after = move_after
        self._small: OrderedDict[Hashable, Entry] = OrderedDict()
        self._mainq: OrderedDict[Hashable, Entry] = OrderedDict()
        self._ghost: OrderedDict[Hashable, int] = OrderedDict()
        self.small_bytes = self.mainq_bytes = self.ghost_bytes = 0
        self.small_capacity = 0
        super().__init__(capacity, tail_fraction)

    @property
    def main_bytes(self) -> int:
        return self.small_bytes + self.mainq_bytes

    @property
    def ghost_capacity(self) -> int:
        return self.main_capacity - self.small_capacity

    def _set_main_capacity(self) -> None:
        self.small_capacity = small_capacity(self.main_capacity, self.small_fraction)
        self._trim_ghost()

    def _trim_ghost(self) -> None:
        while self.ghost_bytes > self.ghost_capacity:
            _, size = self._ghost.popitem(last=False)
            self.ghost_bytes -= size

    def _main_find(self, key: Hashable) -> Entry | None:
        entry = self._small.get(key)
        return entry if entry is not None else self._mainq.get(key)

    def _main_insert(self, key: Hashable, entry: Entry, hot: bool) -> None:
        ghost_size = self._ghost.pop(key, None)
        if ghost_size is not None:
            self.ghost_bytes -= ghost_size
            hot = True
        entry.freq = 0
        if hot:
            self._mainq[key] = entry
            self.mainq_bytes += entry.size
        else:
            self._small[key] = entry
            self.small_bytes += entry.size

    def _main_hit(self, key: Hashable, entry: Entry) -> None:
        entry.freq = min(entry.freq + 1, 3)

    def _main_remove(self, key: Hashable) -> Entry | None:
        entry = self._small.pop(key, None)
        if entry is not None:
            self.small_bytes -= entry.size
            return entry
        entry = self._mainq.pop(key, None)
        if entry is not None:
            self.mainq_bytes -= entry.size
        return entry

    def _main_evict(self) -> Iterator[tuple[Hashable, Entry]]:
        while self.small_bytes + self.mainq_bytes > self.main_capacity:
            if self.small_bytes > self.small_capacity or not self._mainq:
                key, entry = self._small.popitem(last=False)
                self.small_bytes -= entry.size
                if entry.freq >= self.move_after:
                    entry.freq = 0
                    self._mainq[key] = entry
                    self.mainq_bytes += entry.size
                    continue
                self._ghost[key] = entry.size
                self.ghost_bytes += entry.size
                self._trim_ghost()
                yield key, entry
            else:
                key, entry = self._mainq.popitem(last=False)
                self.mainq_bytes -= entry.size
                if entry.freq > 0:
                    entry.freq -= 1
                    self._mainq[key] = entry
                    self.mainq_bytes += entry.size
                    continue
                yield key, entry


#: Eviction policies by the name used in configs and on the command line.
POLICIES: dict[str, type[SegmentedTier]] = {"lru": LRUTier, "s3fifo": S3FIFOTier}


def make_tier(policy: str, capacity: int, tail_fraction: float, small_fraction: float = 0.10,
              move_after: int = 1) -> SegmentedTier:
    """A tier of the named policy; the S3-FIFO knobs are ignored for LRU."""
    if policy == "s3fifo":
        return S3FIFOTier(capacity, tail_fraction, small_fraction, move_after)
    return POLICIES[policy](capacity, tail_fraction)
