"""Consistent-hash routing with spillover: where an image's cache entry lives and where its decode runs.

One implementation for the live serving client and the cluster simulator, so the two can
never disagree on which node owns an id (paper section 4.4). Pure Python, no clock, no I/O.
"""
from __future__ import annotations

import bisect
import hashlib
from collections.abc import Hashable, Iterable, Mapping, Sequence

#: Virtual nodes per member: with 128 points per node the largest owner share over 4..256
#: nodes stays within ~1.3x of the mean (tests/routing/test_ring.py measures it).
DEFAULT_VNODES = 128


def stable_hash(key: str) -> int:
    """64-bit hash of a string that is the same in every process and Python version (not `hash()`)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """A consistent-hash ring with virtual nodes over a set of member names.

    Adding or removing one member moves only the keys that member owned (about 1/N of them),
    so the other members' caches stay warm when the cluster changes.
    """

    def __init__(self, members: Iterable[Hashable] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.vnodes = vnodes
        self._members: tuple[Hashable, ...] = tuple(sorted(set(members), key=str))
        points = sorted(
            (stable_hash(f"{member}#{i}"), str(member), member)
            for member in self._members
            for i in range(vnodes)
        )
        self._points = [p[0] for p in points]
        self._owners = [p[2] for p in points]

    @property
    def members(self) -> tuple[Hashable, ...]:
        """The members, sorted by name: two rings over the same members are equal."""
        return self._members

    def __len__(self) -> int:
        return len(self._members)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and (self._members, self.vnodes) == (other._members, other.vnodes)

    def __repr__(self) -> str:
        return f"HashRing({len(self._members)} members, vnodes={self.vnodes})"

    def owner(self, key: str) -> Hashable:
        """The member that owns `key`: the first virtual node clockwise from the key's hash."""
        if not self._points:
            raise LookupError("the hash ring has no members")
        i = bisect.bisect_right(self._points, stable_hash(key)) % len(self._points)
        return self._owners[i]

    def preference(self, key: str, n: int | None = None) -> list[Hashable]:
        """Distinct members in ring order from `key`'s position: the owner first, then its successors.

        The successors are where the key goes if the owner leaves, so a client that finds the
        owner dead retries on `preference(key)[1]`, which is the owner of the next ring.
        """
        if not self._points:
            raise LookupError("the hash ring has no members")
        want = len(self._members) if n is None else min(n, len(self._members))
        start = bisect.bisect_right(self._points, stable_hash(key))
        seen: list[Hashable] = []
        for step in range(len(self._points)):
            member = self._owners[(start + step) % len(self._points)]
            if member not in seen:
                seen.append(member)
                if len(seen) == want:
                    break
        return seen


def choose_decoder(owner: Hashable, queue_depths: Mapping[Hashable, float], theta: float) -> Hashable:
    """Where a decode for `owner`'s key runs: the owner unless its queue exceeds `theta`.

    Spillover (paper 4.4): when the owner's decode queue is deeper than `theta`, the decode
    goes to the least-loaded member (ties: the first in name order, so every caller agrees),
    and only if that member is strictly less loaded than the owner. `theta = inf` turns
    spillover off. The result is always written back to the owner's cache by the caller.
    """
    depth = queue_depths.get(owner, 0.0)
    if depth <= theta or not queue_depths:
        return owner
    best = min(queue_depths, key=lambda m: (queue_depths[m], str(m)))  # O(N): no sort per spill
    return best if queue_depths[best] < depth else owner


def ring_from_workers(addresses: Sequence[str], vnodes: int = DEFAULT_VNODES) -> HashRing:
    """The ring over Dask worker addresses (what the client builds from the scheduler's list)."""
    return HashRing(addresses, vnodes=vnodes)


def live_owner(ring: HashRing, key: str, dead: Iterable[Hashable] = ()) -> Hashable:
    """The member that serves `key` when the members in `dead` are known to be gone.

    The first live member of `preference(key)`: exactly the owner `key` gets once the ring is
    rebuilt without the dead members, so a retry lands where the key will live from now on.
    """
    gone = set(dead)
    for member in ring.preference(key):
        if member not in gone:
            return member
    raise LookupError("every member of the hash ring is marked dead")
