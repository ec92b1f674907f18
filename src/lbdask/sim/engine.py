"""The event loop of the cluster simulator: router, coalescing, spillover, GPUs, write-back.

Routing decisions are the serving ones (`lbdask.routing.ring.choose_decoder`, the owner table
from `lbdask.routing.ring`'s ring, `lbdask.routing.coalesce.Coalescer`); caches are the nodes' own
`DualFormatCache`s. Kept as one function with local names because it runs once per
request: image-tier hits cost one cache lookup and no event; a decode costs at most two
heap events (arrival at the GPU after a fetch or a latent shipment, and completion).
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
    n_nodes, first = cfg.nodes, int(cfg.warmup * work.requests)
    owner = owner_arr.tolist()
    png_size, lat_size = work.sizes[0].tolist(), work.sizes[1].tolist()
    n = work.requests - first
    arrivals = (work.seconds[first:] - (work.seconds[first] if n else 0.0)) * (1000.0 / speedup)
    latency, tier = array("d", bytes(8 * n)), array("b", bytes(n))   # cheaper per item than numpy
    waits: list[float] = []
    imgstore, coalesce = cfg.alpha == "imgstore", cfg.coalesce
    theta = cfg.theta if cfg.spillover else float("inf")
    tuners = [c.tuner for c in caches]
    gpus = GpuPool(n_nodes, cfg.gpus_per_node)
    out, per_node = gpus.outstanding, gpus.per_node
    depth = dict.fromkeys(range(n_nodes), 0)
    depth_sum, depth_max, dispatched = [0] * n_nodes, [0] * n_nodes, [0] * n_nodes
    coal: Coalescer[tuple[int, float, float]] = Coalescer()
    in_flight, join, lookups, fills = coal.in_flight, coal.join, [c.lookup for c in caches], [c.fill for c in caches]
    q = EventQueue()
    heap, push, pop = q.heap, q.push, q.pop
    spilled = 0
    rng = np.random.default_rng(cfg.seed)

    def start(job, x):
        begin, end = gpus.start(job[5], x, job[7])
        waits.append(begin - x)
        push(end, _DONE, (job, x))

    def finish(job, x, end):
        i, t, o, own, node, gpu, fetch, _, net, kind = job
        if x is not None:                       # a decode: free the GPU slot
            out[gpu] -= 1
            depth[node] = out[gpu] if per_node == 1 else gpus.node_depth(node)
            tn = tuners[own]
            if tn is not None:
                tn.observe_decode(end - x)
                if kind == MISS:
                    tn.observe_fetch(fetch)
                caches[own].set_costs(tn.t_decode, tn.t_fetch)
        fills[own](o, None, None, lat_size[o], png_size[o])   # write-back to the owner, wherever it decoded
        latency[i] = end - t + net
        tier[i] = kind
        if coalesce:
            for w, tw, netw in coal.finish(o):
                latency[w] = end - tw + netw
                tier[w] = COALESCED

    def handle(ev):
        when, _, kind, payload = ev
        if kind == _ARRIVE:
            start(payload, when)
        elif kind == _DONE:
            finish(payload[0], payload[1], when)
        else:
            finish(payload, None, when)

    for b0 in range(0, n, _BLOCK):
        b1 = min(n, b0 + _BLOCK)
        m = b1 - b0
        ts, obs = arrivals[b0:b1].tolist(), work.obj[first + b0:first + b1].tolist()
        dec = cfg.decode_ms.sample(rng, m).tolist()
        fet = (cfg.png_fetch_ms if imgstore else cfg.fetch_ms).sample(rng, m).tolist()
        nets = cfg.network_ms.sample(rng, m).tolist()
        for j in range(m):
            t = ts[j]
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
                continue
            d = depth[own]
            depth_sum[own] += d
            dispatched[own] += 1
            if d > depth_max[own]:
                depth_max[own] = d
            node = choose_decoder(own, depth, theta)
            gpu = gpus.least_loaded(node)
            out[gpu] += 1
            depth[node] = out[gpu] if per_node == 1 else gpus.node_depth(node)
            code = LATENT if kind == "latent" else MISS
            job = (i, t, o, own, node, gpu, fet[j], dec[j], nets[j], code)
            if node != own:
                spilled += 1
            if code == MISS:
                push(t + fet[j], _ARRIVE, job)
            elif node != own and cfg.ship_ms > 0:
                push(t + cfg.ship_ms, _ARRIVE, job)
            else:
                start(job, t)
    while heap:
        handle(pop())
    latency_ms, tiers = np.frombuffer(latency, np.float64).copy(), np.frombuffer(tier, np.int8).copy()
    sim_ms = float((arrivals + latency_ms).max()) if n else 0.0
    busy = np.array(gpus.busy_ms).reshape(n_nodes, per_node).mean(axis=1) / max(sim_ms, 1e-9)
    return dict(latency_ms=latency_ms, tier=tiers, queue_wait_ms=np.array(waits), spilled=spilled, sim_ms=sim_ms,
                arrival_span_ms=float(arrivals[-1]) if n else 0.0,
                owner_requests=np.bincount(owner_arr[work.obj[first:]], minlength=n_nodes), busy_frac=busy,
                node_decodes=np.array(gpus.decodes).reshape(n_nodes, per_node).sum(axis=1),
                depth_mean=np.array(depth_sum) / np.maximum(np.array(dispatched), 1), depth_max=np.array(depth_max))
