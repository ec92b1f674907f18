"""Cost of access statistics: counting a read, flushing, folding and loading, by archive size.

`AccessLog.add` sits on every serving read (image hits included), so its rate is compared
with the least any counter can cost, a plain `dict` increment, in the same run. Flush,
`compact_access` and `load_access` are timed on a folder for N distinct ids (one snapshot
object holds every id ever read, so these grow with N; the object size is printed). The
last table shows what the per-day read counts cost in snapshot bytes: N ids, each read
1-5 times on about half of D days (seeded), folded with the default retention (31 days),
against the same ids read on one day.

Usage: python benchmarks/access_stats.py [--ids 10000 100000 1000000] [--reads 1000000] [--day-ids 10000]
"""
from __future__ import annotations

import argparse
import datetime
import os
import random
import tempfile
import time

from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.access.days import DAY, DEFAULT_RETENTION_DAYS
from lbdask.access.log import AccessLog, compact_access, load_access
from lbdask.storage import open_location


def add_rates(reads: int) -> tuple[float, float]:
    """(AccessLog.add, dict increment) per second over the same ids, CPU time of this process."""
    ids = [f"d{i % 97}/img{i % 50000}.png" for i in range(reads)]
    with tempfile.TemporaryDirectory() as root:
        log = AccessLog(open_location(root), "bench")
        cpu = time.process_time()
        for i in ids:
            log.add(i)
        ours = reads / (time.process_time() - cpu)
    plain: dict[str, int] = {}
    cpu = time.process_time()
    for i in ids:
        plain[i] = plain.get(i, 0) + 1
    return ours, reads / (time.process_time() - cpu)


def store_times(n: int) -> dict[str, float]:
    """Seconds to flush n ids (twice, two writers), fold them, and load them back; snapshot bytes."""
    with tempfile.TemporaryDirectory() as root:
        loc = open_location(root)
        out = {}
        for w in range(2):
            log = AccessLog(loc, f"w{w}")
            for i in range(n):
                log.add(f"d{i % 97}/img{i}.png", 1.7e9 + i)
            t0 = time.perf_counter()
            log.flush()
            out[f"flush{w}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_access(loc)
        out["load_logs"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        compact_access(loc)
        out["compact"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = load_access(loc)
        out["load_snapshot"] = time.perf_counter() - t0
        assert len(stats) == n and all(a.count == 2 for a in stats.values())
        out["snapshot_bytes"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(loc.path("access"))
                                    for f in fs)
        return out


def snapshot_bytes(n: int, days: int) -> int:
    """Bytes of the generation after n ids were read 1-5 times on about half of `days` days
    (on each day of `days` == 1), one flush a day."""
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as root:
        loc = open_location(root)
        log = AccessLog(loc, "w")
        for d in range(days):
            for i in range(n):
                if days == 1 or rng.random() < 0.5:
                    for _ in range(rng.randint(1, 5)):
                        log.add(f"d{i % 97}/img{i}.png", 1.7e9 + d * DAY + rng.uniform(0, DAY - 1))
            log.flush()
        compact_access(loc)
        stats = load_access(loc)
        assert all(len(a.days) <= DEFAULT_RETENTION_DAYS + 1 for a in stats.values())
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(loc.path("access", "generations"))
                   for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--reads", type=int, default=1_000_000)
    ap.add_argument("--day-ids", type=int, default=10_000)
    args = ap.parse_args()
    print(f"# access statistics, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{cpu_model()}, {os.cpu_count()} cores (shared: other jobs ran meanwhile)")
    ours, plain = add_rates(args.reads)
    print("\n| counting a read | per second (CPU) | µs per read |\n|---|---:|---:|")
    print(f"| `AccessLog.add` (lock, merge) | {ours:,.0f} | {1e6 / ours:.2f} |")
    print(f"| baseline: dict increment | {plain:,.0f} | {1e6 / plain:.2f} |")
    print("\n| distinct ids | flush (s) | load, 2 logs (s) | compact (s) | load, snapshot (s) | snapshot bytes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.ids:
        t = store_times(n)
        print(f"| {n:,} | {t['flush0']:.2f} | {t['load_logs']:.2f} | {t['compact']:.2f} | {t['load_snapshot']:.2f} "
              f"| {t['snapshot_bytes']:,} |")
    print(f"\n| {args.day_ids:,} ids read over | snapshot bytes | bytes per id | vs one day |\n|---:|---:|---:|---:|")
    one = snapshot_bytes(args.day_ids, 1)
    for days in (1, 7, 31, 60):
        size = one if days == 1 else snapshot_bytes(args.day_ids, days)
        print(f"| {days} day(s) | {size:,} | {size / args.day_ids:.1f} | {size / one:.2f}x |")


if __name__ == "__main__":
    main()
