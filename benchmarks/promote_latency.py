"""Latent-hit promotion on CPU: `promote_after: auto` against the fixed h = 8, same run.

    python benchmarks/promote_latency.py [--requests 240] [--readers 8] [--ids 15] [--zipf 1.1]
        [--size 192] [--workers 2] [--promote auto 8]

Issue 26's load: `--readers` closed-loop readers through the serving client, Zipf(`--zipf`)
over `--ids` images (corpus PNGs resized to `--size` px, migrated to TAEF2 latents), on a
local cluster of `--workers` worker processes (one thread each) with room for every image.
Each `--promote` setting gets a fresh cluster and the same request sequence. Prints a
markdown table (mean / P50 / P95 / P99, tier counts from the workers' stats, the workers'
T_decode / T_fetch and the threshold they chose) with machine and date.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
from serve_latency import REPO, TAEF2, build_archives, cluster, machine_line, replay, zipf_ids


def settings_for(promote: str, cache_bytes: int):
    from lbdask.serve.settings import ServeSettings

    s = ServeSettings()
    s.cache = dataclasses.replace(s.cache, promote_after=promote if promote == "auto" else int(promote))
    s.worker = dataclasses.replace(s.worker, cache_bytes=cache_bytes, spillover="off")
    return s


def run(promote: str, latent: str, requests: list[str], args, cache_bytes: int) -> str:
    from lbdask.serve.deploy import install, warm

    lc, client = cluster(args.workers)
    with lc, client:
        install(client, latent, settings_for(promote, cache_bytes), "taef2", str(TAEF2))
        warm(client, latent)
        lat = np.asarray(replay(client.scheduler.address, latent, requests, args.readers))
        stats = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
        chosen = client.run(lambda dask_worker: dask_worker.plugins["lbdask-serve"].serving.cache.promote_after)
    tiers = [sum(s[k] for s in stats.values()) for k in ("image_hits", "latent_hits", "misses")]
    td = np.mean([s["t_decode_ms"] for s in stats.values()])
    tf = np.mean([s["t_fetch_ms"] for s in stats.values()])
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return (f"| {promote} | {lat.mean():.0f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | "
            f"{tiers[0]} / {tiers[1]} / {tiers[2]} | {td:.0f} / {tf:.1f} | {sorted(set(chosen.values()))} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=240)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--ids", type=int, default=15)
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--promote", nargs="+", default=["8", "auto"], help="promote_after values (8 = baseline)")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        latent, _, sources = build_archives(Path(d), args.size, 0)
        ids = sorted(sources)[:args.ids]
        requests = zipf_ids(args.requests, ids, args.zipf)
        cache_bytes = 4 * sum(len(sources[i]) for i in ids)
        lines = [f"{args.requests} requests, {args.readers} readers, Zipf {args.zipf} over {len(ids)} images of "
                 f"{args.size} px (TAEF2 latents), {args.workers} workers, cache {cache_bytes / 1e6:.1f} MB each", "",
                 "| promote_after | mean ms | P50 | P95 | P99 | image / latent / miss | T_decode / T_fetch ms "
                 "| threshold used |", "|---|---|---|---|---|---|---|---|"]
        lines += [run(p, latent, requests, args, cache_bytes) for p in args.promote]
    print(machine_line(start))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
