"""The event loop of the cluster simulator: router, coalescing, spillover, GPUs, write-back.

Routing decisions are the serving ones (`lbdask.routing.ring.choose_decoder`, the owner table
from `lbdask.routing.ring`'s ring, `lbdask.routing.coalesce.Coalescer`); caches are the nodes' own
`DualFormatCache`s. `_Replay.requests` runs once per request and binds what it uses to local
names: image-tier hits cost one cache lookup and no event; a decode costs at most two heap
events (arrival at the GPU after a fetch or a latent shipment, and completion).
"""
from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from lbdask.cache import DualFormatCache
from lbdask.routing.coalesce import Coalescer
from lbdask.routing.ring import choose_decoder
from lbdask.sim.events import EventQueue, GpuPool

if TYPE_CHECKING:
    from lbdask.sim.cluster_config import ClusterConfig
    from lbdask.sim.workload import Workload

IMAGE, LATENT, MISS, COALESCED = 0, 1, 2, 3
TIERS = ("image", "latent", "miss", "coalesced")
_ARRIVE, _DONE, _FETCHED = 0, 1, 2
_BLOCK = 1 << 16


def warm(caches: list[DualFormatCache], obj: list[int], owner: list[int], sizes: np.ndarray) -> None:
    """Run requests through the caches only (no clock): the paper's pre-warming (6.1)."""
    png, lat = sizes[0].tolist(), sizes[1].tolist()
    for o in obj:
        cache = caches[owner[o]]
        if cache.lookup(o).outcome != "image":
            cache.fill(o, None, None, lat[o], png[o])


def run_events(work: Workload, owner_arr: np.ndarray, cfg: ClusterConfig, speedup: float,
               caches: list[DualFormatCache]) -> dict:
    """Replay the timed part of `work` (after `warm`): the per-request and per-node arrays of a ClusterResult."""
    first = int(cfg.warmup * work.requests)
    n = work.requests - first
    arrivals = (work.seconds[first:] - (work.seconds[first] if n else 0.0)) * (1000.0 / speedup)
    replay = _Replay(work, owner_arr.tolist(), cfg, caches, n)
    rng = np.random.default_rng(cfg.seed)
    fetch_ms = cfg.png_fetch_ms if replay.imgstore else cfg.fetch_ms
    for b0 in range(0, n, _BLOCK):   # service times drawn a block at a time, in this order
        b1 = min(n, b0 + _BLOCK)
        m = b1 - b0
        dec, fet = cfg.decode_ms.sample(rng, m).tolist(), fetch_ms.sample(rng, m).tolist()
        replay.requests(b0, arrivals[b0:b1].tolist(), work.obj[first + b0:first + b1].tolist(),
                        dec, fet, cfg.network_ms.sample(rng, m).tolist())
    replay.drain()
    return replay.result(arrivals, np.bincount(owner_arr[work.obj[first:]], minlength=cfg.nodes))


class _Replay:
    """The state of one replay (GPUs, queue depths, coalescer, event heap, per-request
    outputs) and what happens to it: a request arrives, a decode starts, a request finishes."""

    def __init__(self, work: Workload, owner: list[int], cfg: ClusterConfig, caches: list[DualFormatCache],
                 n: int) -> None:
        self.owner, self.caches, self.nodes, self.ship_ms = owner, caches, cfg.nodes, cfg.ship_ms
        self.png_size, self.lat_size = work.sizes[0].tolist(), work.sizes[1].tolist()
        self.latency, self.tier = array("d", bytes(8 * n)), array("b", bytes(n))   # cheaper per item than numpy
        self.waits: list[float] = []
        self.imgstore, self.coalesce = cfg.alpha == "imgstore", cfg.coalesce
        self.theta = cfg.theta if cfg.spillover else float("inf")
        self.tuners = [c.tuner for c in caches]
        self.gpus = GpuPool(cfg.nodes, cfg.gpus_per_node)
        self.depth = dict.fromkeys(range(cfg.nodes), 0)
        self.depth_sum, self.depth_max, self.dispatched = [0] * cfg.nodes, [0] * cfg.nodes, [0] * cfg.nodes
        self.coal: Coalescer[tuple[int, float, float]] = Coalescer()
        self.queue = EventQueue()
        self.spilled = 0

    def requests(self, b0: int, ts: list[float], obs: list[int], dec: list[float], fet: list[float],
                 nets: list[float]) -> None:
        """Requests b0, b0 + 1, ... arriving at `ts` for objects `obs`, with their service times."""
        heap, pop, push, handle = self.queue.heap, self.queue.pop, self.queue.push, self.handle
        owner, lookups, latency = self.owner, [c.lookup for c in self.caches], self.latency
        in_flight, join, coalesce, imgstore = self.coal.in_flight, self.coal.join, self.coalesce, self.imgstore
        for j, t in enumerate(ts):
            while heap and heap[0][0] <= t:
                handle(pop())
            i, o = b0 + j, obs[j]
            own = owner[o]
            if coalesce and in_flight(o):
                join(o, (i, t, nets[j]))
                continue
            kind = lookups[own](o).outcome
            if kind == "image":
                latency[i] = nets[j]
                continue
            if coalesce:
                join(o, None)
            if imgstore:                        # ImgStore: the PNG comes from the object store, no GPU
                push(t + fet[j], _FETCHED, (i, t, o, own, own, -1, fet[j], 0.0, nets[j], MISS))
            else:
                self.dispatch(i, t, o, own, fet[j], dec[j], nets[j], LATENT if kind == "latent" else MISS)

    def dispatch(self, i: int, t: float, o: int, own: int, fetch: float, service: float, net: float,
                 code: int) -> None:
        """Send request i's decode to a node (the owner, or a spillover node) and GPU: at once,
        after the object-store fetch of a miss, or after shipping a latent to another node."""
        d = self.depth[own]
        self.depth_sum[own] += d
        self.dispatched[own] += 1
        self.depth_max[own] = max(self.depth_max[own], d)
        node = choose_decoder(own, self.depth, self.theta)
        gpu = self.gpus.least_loaded(node)
        self.gpus.outstanding[gpu] += 1
        self._update_depth(node, gpu)
        job = (i, t, o, own, node, gpu, fetch, service, net, code)
        if node != own:
            self.spilled += 1
        if code == MISS:
            self.queue.push(t + fetch, _ARRIVE, job)
        elif node != own and self.ship_ms > 0:
            self.queue.push(t + self.ship_ms, _ARRIVE, job)
        else:
            self.start(job, t)

    def _update_depth(self, node: int, gpu: int) -> None:
        gpus = self.gpus
        self.depth[node] = gpus.outstanding[gpu] if gpus.per_node == 1 else gpus.node_depth(node)

    def start(self, job: tuple, x: float) -> None:
        """A decode reaches its GPU at `x`: it waits there for the decodes before it."""
        begin, end = self.gpus.start(job[5], x, job[7])
        self.waits.append(begin - x)
        self.queue.push(end, _DONE, (job, x))

    def handle(self, ev: tuple) -> None:
        when, _, kind, payload = ev
        if kind == _ARRIVE:
            self.start(payload, when)
        elif kind == _DONE:
            self.finish(payload[0], payload[1], when)
        else:
            self.finish(payload, None, when)

    def finish(self, job: tuple, x: float | None, end: float) -> None:
        """A request is answered at `end` (with the requests coalesced on it); a decode (`x`: when
        it reached the GPU) frees its GPU and teaches the owner's tuner its times."""
        i, t, o, own, node, gpu, fetch, _, net, kind = job
        if x is not None:
            self.gpus.outstanding[gpu] -= 1
            self._update_depth(node, gpu)
            tn = self.tuners[own]
            if tn is not None:
                tn.observe_decode(end - x)
                if kind == MISS:
                    tn.observe_fetch(fetch)
                self.caches[own].set_costs(tn.t_decode, tn.t_fetch)
        self.caches[own].fill(o, None, None, self.lat_size[o], self.png_size[o])   # write-back to the owner
        self.latency[i] = end - t + net
        self.tier[i] = kind
        if self.coalesce:
            for w, tw, netw in self.coal.finish(o):
                self.latency[w] = end - tw + netw
                self.tier[w] = COALESCED

    def drain(self) -> None:
        """Run the events left after the last arrival."""
        while self.queue.heap:
            self.handle(self.queue.pop())

    def result(self, arrivals: np.ndarray, owner_requests: np.ndarray) -> dict:
        gpus, nodes = self.gpus, self.nodes
        latency_ms, tiers = np.frombuffer(self.latency, np.float64).copy(), np.frombuffer(self.tier, np.int8).copy()
        sim_ms = float((arrivals + latency_ms).max()) if len(arrivals) else 0.0
        busy = np.array(gpus.busy_ms).reshape(nodes, gpus.per_node).mean(axis=1) / max(sim_ms, 1e-9)
        return {"latency_ms": latency_ms, "tier": tiers, "queue_wait_ms": np.array(self.waits),
                "spilled": self.spilled, "sim_ms": sim_ms,
                "arrival_span_ms": float(arrivals[-1]) if len(arrivals) else 0.0,
                "owner_requests": owner_requests, "busy_frac": busy,
                "node_decodes": np.array(gpus.decodes).reshape(nodes, gpus.per_node).sum(axis=1),
                "depth_mean": np.array(self.depth_sum) / np.maximum(np.array(self.dispatched), 1),
                "depth_max": np.array(self.depth_max)}
