"""Speed of the cluster simulator (`lbdask sim-cluster`): simulated requests per second, one core.

Rates are timed requests per CPU second of the event loop (time.process_time; warm-up and
ring placement excluded), so they measure one core even on a shared machine; wall-clock
rates are printed beside. The baseline in the same run is the Python `DualFormatCache`
alone (lookup + fill, no clock, no routing) over the same requests and owners: the floor
the event loop is built on.

Usage: python benchmarks/sim_cluster_speed.py [--requests 1000000] [--nodes 64] [--rate-per-node 64]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np
from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.cache.settings import CacheSettings
from lbdask.sim.cluster import ClusterConfig, Workload, build_caches, simulate_cluster
from lbdask.sim.engine import warm
from lbdask.sim.placement import node_members
from lbdask.sim.trace import generate_trace


def cache_only_rate(work: Workload, cfg: ClusterConfig, owners: np.ndarray) -> tuple[float, float]:
    """(CPU, wall) requests/s of the per-node caches alone on the timed requests, after the same warm-up."""
    caches = build_caches(cfg, int(cfg.cache_frac * work.wss), CacheSettings(), 10_000)
    first = int(cfg.warmup * work.requests)
    warm(caches, work.obj[:first].tolist(), owners.tolist(), work.sizes)
    timed = work.obj[first:].tolist()
    start, cpu = time.perf_counter(), time.process_time()
    warm(caches, timed, owners.tolist(), work.sizes)
    return len(timed) / (time.process_time() - cpu), len(timed) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--rate-per-node", type=float, default=64.0, help="offered requests/s per node")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}, "
          f"python {platform.python_version()}; date: {datetime.date.today()}")
    work = Workload.from_trace(generate_trace(args.requests, seed=0))
    owners = work.owners(node_members(args.nodes))
    base = ClusterConfig(nodes=args.nodes, warmup=args.warmup)
    speedup = work.speedup_for_rate(args.warmup, args.rate_per_node * args.nodes)
    print(f"trace: {work.requests:,} requests ({work.requests - int(args.warmup * work.requests):,} timed), "
          f"{work.sizes.shape[1]:,} objects; {args.nodes} nodes, {args.rate_per_node:g} requests/s per node")
    rows = []
    for spill, coal, alpha in ((True, True, "adaptive"), (False, True, "adaptive"), (True, False, "adaptive"),
                               (True, True, "0"), (True, True, "decode-all")):
        cfg = ClusterConfig(**{**base.__dict__, "spillover": spill, "coalesce": coal, "alpha": alpha})
        cpu_rates, wall_rates = [], []
        for _ in range(args.repeats):
            r = simulate_cluster(work, cfg, speedup)
            cpu_rates.append(r.requests / r.cpu_s)
            wall_rates.append(r.requests / r.wall_s)
        fr = r.tier_fracs()
        rows.append((f"sim-cluster, alpha={alpha}, spillover {'on' if spill else 'off'}, coalesce "
                     f"{'on' if coal else 'off'} (GPU work {fr['latent'] + fr['miss']:.0%})",
                     float(np.median(cpu_rates)), float(np.median(wall_rates))))
    rows.append(("baseline: DualFormatCache lookup + fill alone, adaptive", *cache_only_rate(work, base, owners)))
    floor = rows[-1][1]
    print(f"\n| implementation | simulated requests per CPU second (median of {args.repeats}) "
          "| wall-clock requests/s | vs cache alone (CPU) |")
    print("|---|---|---|---|")
    for name, rate, wall in rows:
        print(f"| {name} | {rate:,.0f} | {wall:,.0f} | {rate / floor:.2f}x |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
