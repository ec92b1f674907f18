"""Read latency per tier as fixed-bucket histograms: recorded by a worker, merged by the scheduler.

Fixed buckets (Prometheus style, milliseconds to minutes) make histograms of different
workers and different moments addable, so the scheduler can subtract two snapshots and read
the percentiles of any window without the workers keeping a list of latencies.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

#: upper bounds (seconds) of the finite buckets; one +Inf bucket follows
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: how a read ended: answered from the image tier, the latent tier (a decode), a miss of
#: both (archive fetch + decode), or an error (unknown id, store unreachable, corrupt object)
TIERS = ("image", "latent", "miss", "error")

Counts = list[int]   # per bucket, not cumulative; len(BOUNDS) + 1 (the last is +Inf)


class ReadLatency:
    """Per-tier histograms of read latency of one worker (thread-safe, O(buckets) per read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {t: [0] * (len(BOUNDS) + 1) for t in TIERS}
        self._sums = dict.fromkeys(TIERS, 0.0)

    def observe(self, tier: str, seconds: float) -> None:
        i = next((k for k, b in enumerate(BOUNDS) if seconds <= b), len(BOUNDS))
        with self._lock:
            self._counts[tier][i] += 1
            self._sums[tier] += seconds

    def snapshot(self) -> dict[str, dict]:
        """{"counts": {tier: Counts}, "sums": {tier: seconds}}: plain data for heartbeats and JSON."""
        with self._lock:
            return {"counts": {t: list(c) for t, c in self._counts.items()}, "sums": dict(self._sums)}


def cumulative(counts: Counts) -> list[tuple[str, int]]:
    """(le, cumulative count) pairs as Prometheus' histogram buckets name them."""
    out, total = [], 0
    for bound, n in zip([*(repr(b) for b in BOUNDS), "+Inf"], counts):
        total += n
        out.append((bound, total))
    return out


def quantile(counts: Counts, q: float) -> float | None:
    """The q-quantile (seconds) of a histogram, interpolated inside its bucket as Prometheus'
    histogram_quantile does; the last finite bound when it falls in +Inf; None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(BOUNDS):
                return BOUNDS[-1]
            low = BOUNDS[i - 1] if i else 0.0
            return low + (BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return BOUNDS[-1]


def add(into: dict[str, Counts], counts: Mapping[str, Iterable[int]], sign: int = 1) -> None:
    """into[tier] += sign * counts[tier], bucket by bucket."""
    for tier, c in counts.items():
        row = into.setdefault(tier, [0] * (len(BOUNDS) + 1))
        for i, n in enumerate(c):
            row[i] += sign * n
