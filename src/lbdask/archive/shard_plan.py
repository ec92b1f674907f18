"""Fresh latent shards for a whole plan of batches: one allocation per bucket, so submitting a
batch (migrate) or a chunk (retier) costs no store request."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lbdask.archive.store import Archive

#: What one writer wants a shard in: bucket name, bits, channels, height, width.
ShardWant = tuple[str, int, int, int, int]


def allocate_shards_for(arc: Archive, wants: Sequence[ShardWant]) -> list[int]:
    """One fresh shard number per entry of `wants`, in order (driver only): each bucket is
    created if missing and all its shards allocated in one call."""
    counts = Counter(want[0] for want in wants)
    next_free: dict[str, int] = {}
    for want in wants:
        if want[0] not in next_free:
            arc.ensure_bucket(*want)
            next_free[want[0]] = arc.allocate_shards(want[0], counts[want[0]])
    numbers = []
    for name, *_shape in wants:
        numbers.append(next_free[name])
        next_free[name] += 1
    return numbers
