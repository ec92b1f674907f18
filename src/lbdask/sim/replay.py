"""Trace replay through per-node dual-format caches: preparation, one run, its result.

Object ids are mapped to dense integers and to nodes (by the serving hash ring,
`lbdask.routing.ring`, over `nodes` simulated members); each node gets a cache of
`cache_frac` x WSS bytes (the paper's convention, section 6.1) and its own tuner.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from lbdask.cache.promotion import promotion_threshold
from lbdask.cache.settings import CacheConfig
from lbdask.cache.tuner import TunerConfig
from lbdask.errors import ConfigError
from lbdask.sim.kernel import LRU, S3FIFO, CacheParams, ReplayOutput, TunerParams, replay
from lbdask.sim.placement import node_members, owner_index
from lbdask.sim.trace import Trace

POLICY_CODES = {"lru": LRU, "s3fifo": S3FIFO}
#: Windows per trace in the paper: 2.07 B requests / W = 1 M.
PAPER_WINDOWS = 2070
MIN_WINDOW = 10_000
#: `--alpha` label of an adaptive run by gradient (src/lbdask/cache/tuner.py).
GRADIENT_LABELS = {"ghost": "adaptive", "per_byte": "adaptive-per-byte", "paper": "adaptive-paper"}


@dataclass
class PreparedTrace:
    """A trace as the kernel wants it: dense ids and per-object sizes."""

    obj: np.ndarray          # int32 dense object index per request
    orig_ids: np.ndarray     # int64 original id per dense index
    sizes: np.ndarray        # int64 (2, n_objects): PNG, latent
    wss: int                 # total PNG bytes of distinct objects

    @property
    def requests(self) -> int:
        return len(self.obj)


@dataclass
class SimResult:
    """Outcome counts, modelled latency and alpha trajectory of one replay."""

    policy: str
    alpha: str                       # a GRADIENT_LABELS value (adaptive) or the static value
    cache_frac: float
    nodes: int
    capacity: int                    # per-node bytes
    window: int
    requests: int
    image_hits: int
    latent_hits: int
    misses: int
    mean_latency_ms: float
    seconds: float
    traj_index: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    traj_node: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int32))
    traj_alpha: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    outcomes: np.ndarray | None = field(repr=False, default=None)
    tails: np.ndarray | None = field(repr=False, default=None)

    def row(self) -> dict:
        """The scalar fields, for tables and JSON."""
        n = max(self.requests, 1)
        return {"policy": self.policy, "alpha": self.alpha, "cache_frac": self.cache_frac,
                "nodes": self.nodes, "capacity_bytes": self.capacity, "window": self.window,
                "requests": self.requests, "image_frac": self.image_hits / n,
                "latent_frac": self.latent_hits / n, "miss_frac": self.misses / n,
                "mean_latency_ms": self.mean_latency_ms, "seconds": self.seconds,
                "requests_per_s": self.requests / self.seconds if self.seconds else 0.0,
                "final_alpha": float(self.traj_alpha[-1]) if len(self.traj_alpha) else None}


def prepare(trace: Trace) -> PreparedTrace:
    """Dense ids and per-object sizes (the first size seen for each object)."""
    ids, first, inverse = np.unique(trace.id, return_index=True, return_inverse=True)
    sizes = np.stack([trace.png_bytes[first], trace.latent_bytes[first]]).astype(np.int64)
    return PreparedTrace(obj=inverse.astype(np.int32), orig_ids=ids, sizes=sizes, wss=int(sizes[0].sum()))


def node_of(ids: np.ndarray, nodes: int) -> np.ndarray:
    """Owner node of each id: the serving hash ring over `nodes` simulated members."""
    if nodes == 1:
        return np.zeros(len(ids), np.int32)
    return owner_index(ids, node_members(nodes))


def effective_window(requests_per_node: int, window: int) -> int:
    """W scaled to a shorter trace: the paper's 2,070 windows per trace, >= 10 k, <= W."""
    return int(min(window, max(MIN_WINDOW, round(requests_per_node / PAPER_WINDOWS))))


def simulate(prep: PreparedTrace, cache_frac: float, alpha: float | None = None, policy: str = "lru",
             nodes: int = 1, cache: CacheConfig | None = None, tuner: TunerConfig | None = None,
             window: int | None = None, keep_outcomes: bool = False, gradient: str | None = None) -> SimResult:
    """Replay `prep` once. alpha None = adaptive (starting at tuner.alpha); else static alpha.

    gradient ("ghost" | "per_byte" | "paper") overrides tuner.gradient for adaptive runs.
    window None scales tuner.window to the trace (`effective_window`); an int is used as is.
    """
    cache = cache or CacheConfig()
    tuner = tuner or TunerConfig()
    if policy not in POLICY_CODES:
        raise ConfigError(f"sim: unknown policy {policy!r}; choose from {', '.join(POLICY_CODES)}")
    if not 0 < cache_frac <= 1:
        raise ConfigError(f"sim: cache fraction must be in (0, 1], got {cache_frac}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ConfigError(f"sim: alpha must be in [0, 1] or adaptive, got {alpha}")
    if nodes < 1:
        raise ConfigError(f"sim: nodes must be >= 1, got {nodes}")
    capacity = int(cache_frac * prep.wss)
    win = window if window is not None else effective_window(prep.requests // nodes, tuner.window)
    n = prep.requests
    outcomes = np.empty(n, np.int8)
    tails = np.empty(n, np.bool_)
    gradient = gradient or tuner.gradient
    shortest = min(win, tuner.ghost_events) if gradient == "ghost" else win   # ghost windows close early
    max_traj = n // max(shortest, 1) + nodes + 1
    traj_index = np.zeros(max_traj, np.int64)
    traj_node = np.zeros(max_traj, np.int32)
    traj_alpha = np.zeros(max_traj)
    adaptive = alpha is None
    if gradient not in GRADIENT_LABELS:
        raise ConfigError(f"sim: unknown gradient {gradient!r}; choose {', '.join(GRADIENT_LABELS)}")
    label = GRADIENT_LABELS[gradient] if adaptive else f"{alpha:g}"
    start = time.perf_counter()
    promote = promotion_threshold(cache.promote_after, tuner.t_decode_ms, tuner.t_fetch_ms)
    tuned = adaptive and gradient == "ghost" and cache.promote_after == "auto" and promote > 0
    cache_params = CacheParams(capacity, tuner.alpha if adaptive else float(alpha), cache.tail, promote,
                               POLICY_CODES[policy], cache.s3fifo_small, cache.s3fifo_move_after, tuned)
    tuner_params = TunerParams(adaptive, gradient == "per_byte", win, tuner.step, tuner.alpha_min, tuner.alpha_max,
                               tuner.t_decode_ms, tuner.t_fetch_ms, gradient == "ghost", tuner.ghost,
                               tuner.ghost_step, tuner.ghost_events)
    img, lat, miss, n_traj = replay(
        prep.obj, node_of(prep.orig_ids, nodes), prep.sizes, nodes,
        cache_params, tuner_params, ReplayOutput(outcomes, tails, traj_index, traj_node, traj_alpha))
    seconds = time.perf_counter() - start
    latency = (lat * tuner.t_decode_ms + miss * (tuner.t_decode_ms + tuner.t_fetch_ms)) / max(n, 1)
    return SimResult(policy=policy, alpha=label, cache_frac=cache_frac,
                     nodes=nodes, capacity=capacity, window=win, requests=n, image_hits=int(img),
                     latent_hits=int(lat), misses=int(miss), mean_latency_ms=float(latency),
                     seconds=seconds, traj_index=traj_index[:n_traj], traj_node=traj_node[:n_traj],
                     traj_alpha=traj_alpha[:n_traj], outcomes=outcomes if keep_outcomes else None,
                     tails=tails if keep_outcomes else None)
