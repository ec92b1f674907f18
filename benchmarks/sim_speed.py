"""Replay speed of the compiled cache simulator (requests/s, one core) vs the Python cache.

Rates are requests per CPU second of this process (time.process_time), so they measure
one core even on a shared, oversubscribed machine; wall-clock rates are printed beside.

Usage: python benchmarks/sim_speed.py [--requests 5000000] [--baseline-requests 200000]
The baseline drives `lbdask.cache.DualFormatCache` (the serving workers' class) over a
prefix of the same trace; both use adaptive alpha, LRU tiers and a 1 % cache.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

from lbdask.cache import CacheConfig, DualFormatCache
from lbdask.cache.tuner import MarginalHitTuner, TunerConfig
from lbdask.sim import prepare, simulate
from lbdask.sim.trace import generate_trace


def python_cache_rate(prep, cache_frac: float, n: int, window: int) -> tuple[float, float]:
    """(CPU, wall) requests/s of the thread-safe Python cache on the first n requests."""
    cache = DualFormatCache(int(cache_frac * prep.wss), CacheConfig(), tuner=MarginalHitTuner(TunerConfig(window=window)))
    sizes = prep.sizes
    obj = prep.obj[:n].tolist()
    start, cpu = time.perf_counter(), time.process_time()
    for o in obj:
        if cache.lookup(o).outcome != "image":
            cache.fill(o, None, None, latent_size=int(sizes[1, o]), image_size=int(sizes[0, o]))
    return n / (time.process_time() - cpu), n / (time.perf_counter() - start)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5_000_000)
    ap.add_argument("--baseline-requests", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores visible, load average "
          f"{os.getloadavg()[0]:.1f}, python {platform.python_version()}; date: {datetime.date.today()}")
    t0 = time.perf_counter()
    prep = prepare(generate_trace(args.requests, seed=0))
    print(f"trace: {prep.requests:,} requests, {prep.sizes.shape[1]:,} objects (generated in "
          f"{time.perf_counter() - t0:.1f} s)")
    simulate(prep, 0.01, None, "lru")                      # compile / load the numba cache
    rows = []
    for policy in ("lru", "s3fifo"):
        for alpha, label in ((None, "adaptive"), (0.5, "static 0.5")):
            cpu_rates, wall_rates = [], []
            for _ in range(args.repeats):
                cpu = time.process_time()
                r = simulate(prep, 0.01, alpha, policy)
                cpu_rates.append(r.requests / (time.process_time() - cpu))
                wall_rates.append(r.requests / r.seconds)
            rows.append((f"numba kernel, {policy}, {label}", prep.requests, float(np.median(cpu_rates)),
                         float(np.median(wall_rates))))
    window = max(1000, args.baseline_requests // 100)
    rows.append(("Python DualFormatCache, lru, adaptive (baseline)", args.baseline_requests,
                 *python_cache_rate(prep, 0.01, args.baseline_requests, window)))
    base = rows[-1][2]
    print(f"\n| implementation | requests | requests per CPU second (median of {args.repeats}) "
          "| wall-clock requests/s | vs baseline (CPU) |")
    print("|---|---|---|---|---|")
    for name, n, rate, wall in rows:
        print(f"| {name} | {n:,} | {rate / 1e6:.2f} M | {wall / 1e6:.2f} M | {rate / base:.0f}x |")


if __name__ == "__main__":
    main()
