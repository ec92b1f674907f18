"""A serving cluster by discrete-event simulation: the real router and caches, simulated GPUs.

Each request of a trace reaches the router at its (sped-up) trace time. The router and
the nodes are the serving code itself: `lbdask.routing.ring` places every id on its owner node
and decides spillover, `lbdask.routing.coalesce.Coalescer` holds in-flight ids, and each node has
its own `lbdask.cache.DualFormatCache` with a `MarginalHitTuner`. Only time is simulated:
object-store fetches, latent shipping and the network hop are drawn delays, and each GPU
is a FIFO server (`events.GpuPool`) with drawn decode times (paper sections 4.4, 6.3, 6.5.3).

Latency of a request (arrival at the router to response back at the router):
image hit = network; latent hit = [ship] + GPU wait + decode + network;
full miss = fetch + GPU wait + decode + network; coalesced = the leader's finish - own
arrival + network. Decoded results are written back to the owner's cache, wherever the
decode ran. Image-tier hits (most requests) create no events at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from lbdask.cache import DualFormatCache
from lbdask.cache.settings import CacheSettings
from lbdask.cache.tuner import MarginalHitTuner
from lbdask.errors import ConfigError
from lbdask.sim.cluster_config import ClusterConfig
from lbdask.sim.engine import COALESCED, TIERS, run_events, warm
from lbdask.sim.placement import node_members
from lbdask.sim.replay import effective_window
from lbdask.sim.workload import Workload


@dataclass
class ClusterResult:
    """Latencies, tier counts and per-node load of one simulated configuration."""

    config: ClusterConfig
    speedup: float
    latency_ms: np.ndarray = field(repr=False)   # per timed request, in arrival order
    tier: np.ndarray = field(repr=False)         # IMAGE / LATENT / MISS / COALESCED per timed request
    queue_wait_ms: np.ndarray = field(repr=False)
    spilled: int
    sim_ms: float                                # simulated time from first arrival to last response
    arrival_span_ms: float                       # simulated time from first to last arrival
    wall_s: float                                # the event loop's wall time (warm-up excluded)
    cpu_s: float                                 # ... and its CPU time (this process)
    owner_requests: np.ndarray                   # per node: requests whose id it owns
    node_decodes: np.ndarray                     # per node: decodes its GPUs ran
    busy_frac: np.ndarray                        # per node: GPU busy time / simulated time
    depth_mean: np.ndarray                       # per node: owner queue depth seen at decode dispatch
    depth_max: np.ndarray
    cache_bytes: np.ndarray                      # per node at the end
    node_alpha: np.ndarray

    @property
    def requests(self) -> int:
        return len(self.latency_ms)

    def tier_fracs(self) -> dict[str, float]:
        counts = np.bincount(self.tier, minlength=4) / max(self.requests, 1)
        return dict(zip(TIERS, counts.tolist()))

    def row(self) -> dict:
        """The scalar fields, for tables and `--json`."""
        c, lat = self.config, self.latency_ms
        p50, p95, p99 = np.percentile(lat, [50, 95, 99]).tolist() if len(lat) else (0.0, 0.0, 0.0)
        waits = self.queue_wait_ms
        fr = self.tier_fracs()
        return {"nodes": c.nodes, "gpus_per_node": c.gpus_per_node, "alpha": c.alpha,
                "spillover": c.spillover, "coalesce": c.coalesce, "theta": c.theta,
                "cache_frac": c.cache_frac, "requests": self.requests,
                "mean_ms": float(lat.mean()) if len(lat) else 0.0, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                **{f"{k}_frac": v for k, v in fr.items()},
                "coalesced": int((self.tier == COALESCED).sum()), "spilled": self.spilled,
                "decodes": int(self.node_decodes.sum()),
                "queue_wait_mean_ms": float(waits.mean()) if len(waits) else 0.0,
                "queue_wait_p99_ms": float(np.percentile(waits, 99)) if len(waits) else 0.0,
                "arrival_rate_per_s": self.requests / max(self.arrival_span_ms / 1000, 1e-9),
                "speedup": self.speedup, "gpu_busy_mean": float(self.busy_frac.mean()),
                "gpu_busy_max": float(self.busy_frac.max()),
                "owner_load_max_over_mean": float(self.owner_requests.max() / max(self.owner_requests.mean(), 1e-9)),
                "depth_max": int(self.depth_max.max()), "cache_bytes_mean": float(self.cache_bytes.mean()),
                "wall_s": self.wall_s, "requests_per_s": (self.requests / self.wall_s) if self.wall_s else 0.0,
                "requests_per_cpu_s": (self.requests / self.cpu_s) if self.cpu_s else 0.0}


def build_caches(cfg: ClusterConfig, capacity: int, settings: CacheSettings, window: int) -> list[DualFormatCache]:
    """One cache per node: adaptive (own tuner), static alpha, image-only (ImgStore) or none (Decode-All)."""
    caches = []
    for _ in range(cfg.nodes):
        if cfg.alpha == "decode-all":
            caches.append(DualFormatCache(0, settings.cache, alpha=0.0))
        elif cfg.alpha == "imgstore":
            caches.append(DualFormatCache(capacity, settings.cache, alpha=1.0))
        elif cfg.alpha.startswith("adaptive"):
            gradient = {"adaptive-paper": "paper", "adaptive-per-byte": "per_byte"}.get(cfg.alpha,
                                                                                      settings.tuner.gradient)
            tuner = MarginalHitTuner(replace(settings.tuner, window=window, gradient=gradient))
            caches.append(DualFormatCache(capacity, settings.cache, tuner=tuner))
        else:
            caches.append(DualFormatCache(capacity, settings.cache, alpha=float(cfg.alpha)))
        caches[-1].set_costs(settings.tuner.t_decode_ms, settings.tuner.t_fetch_ms)   # an `auto` threshold
    return caches


def simulate_cluster(work: Workload, cfg: ClusterConfig, speedup: float, settings: CacheSettings | None = None,
                     members: list[str] | None = None) -> ClusterResult:
    """Replay `work` through the simulated cluster; trace time is divided by `speedup`."""
    cfg.validate()
    if speedup <= 0:
        raise ConfigError(f"sim-cluster: speed-up must be > 0, got {speedup}")
    settings = settings or CacheSettings()
    members = members or node_members(cfg.nodes)
    if len(members) != cfg.nodes:
        raise ConfigError(f"sim-cluster: {len(members)} member names for {cfg.nodes} nodes")
    window = effective_window(work.requests // cfg.nodes, settings.tuner.window)
    caches = build_caches(cfg, int(cfg.cache_frac * work.wss), settings, window)
    owners = work.owners(members)
    warm(caches, work.obj[:int(cfg.warmup * work.requests)].tolist(), owners.tolist(), work.sizes)
    start, cpu = time.perf_counter(), time.process_time()
    out = run_events(work, owners, cfg, speedup, caches)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return ClusterResult(config=cfg, speedup=speedup, wall_s=wall, cpu_s=cpu,
                         cache_bytes=np.array([c.used for c in caches]),
                         node_alpha=np.array([c.alpha for c in caches]), **out)
