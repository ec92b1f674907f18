"""A trace prepared for the cluster simulator: arrival times, dense object ids, sizes, ring owners.

Its own module so the event loop (`engine.py`) and the driver (`cluster.py`) both use it
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lbdask.errors import ConfigError
from lbdask.sim.placement import owner_index
from lbdask.sim.trace import Trace


@dataclass
class Workload:
    """A trace ready to replay: arrival seconds (strictly ordered), dense ids, sizes."""

    seconds: np.ndarray      # float64 trace time per request, requests within one second spread evenly
    obj: np.ndarray          # int32 dense object index per request
    orig_ids: np.ndarray     # int64 trace id per dense index
    sizes: np.ndarray        # int64 (2, n_objects): PNG, latent
    _owners: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_trace(cls, trace: Trace) -> Workload:
        order = np.argsort(trace.timestamp, kind="stable")
        ts = trace.timestamp[order].astype(np.float64)
        _, start, count = np.unique(ts, return_index=True, return_counts=True)
        rank = np.arange(len(ts)) - np.repeat(start, count)
        seconds = ts + (rank + 0.5) / np.repeat(count, count)
        ids, first, inverse = np.unique(trace.id[order], return_index=True, return_inverse=True)
        sizes = np.stack([trace.png_bytes[order][first], trace.latent_bytes[order][first]]).astype(np.int64)
        return cls(seconds, inverse.astype(np.int32), ids, sizes)

    @property
    def requests(self) -> int:
        return len(self.obj)

    @property
    def wss(self) -> int:
        return int(self.sizes[0].sum())

    def owners(self, members: list[str]) -> np.ndarray:
        """Owner index of every object on the serving ring over `members` (memoised)."""
        key = tuple(members)
        if key not in self._owners:
            self._owners[key] = owner_index(self.orig_ids, members)
        return self._owners[key]

    def timed_span(self, warmup: float) -> tuple[int, float]:
        """(first timed request, trace seconds the timed part spans)."""
        first = int(warmup * self.requests)
        return first, float(self.seconds[-1] - self.seconds[first])

    def speedup_for_rate(self, warmup: float, rate: float) -> float:
        """The speed-up that makes the timed part arrive at `rate` requests per second."""
        first, span = self.timed_span(warmup)
        if rate <= 0 or span <= 0:
            raise ConfigError(f"sim-cluster: cannot reach {rate} requests/s on this trace")
        return rate * span / (self.requests - first)
