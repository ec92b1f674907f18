"""Read latency through a live serving cluster: Table-4-style comparison, spillover, hit path.

    python benchmarks/serve_latency.py [--requests 240] [--concurrency 4] [--zipf 1.11]
        [--fetch-ms 100] [--bandwidth 90] [--object-scale 16] [--runtime openvino --precision bf16]

On one run, against local Dask clusters (worker processes, one thread each):
1. Requests drawn Zipf(`--zipf`) over an archive of 256 px corpus images (migrated with
   `lbdask migrate`; `--zipf 0`: a trace from `lbdask trace generate` folded onto them),
   replayed closed-loop with `--concurrency` readers on 2 workers, for Decode-All (no
   cache), ImgStore (PNG archive + an image-only LRU of the same bytes), alpha=1, alpha=0
   and adaptive alpha: mean/P50/P95/P99, tier fractions and the workers' T_decode/T_fetch.
   Every archive fetch waits like an object store: first byte `--fetch-ms` plus the object's
   stored bytes x `--object-scale` (default: as if it were the 1024 px image it stands for)
   at `--bandwidth` MB/s, so a PNG fetch costs more than a latent fetch, as on S3. From the
   measured tier fractions it prints the T_decode that adaptive would need to reach
   0.85x ImgStore's mean.
2. Skewed load (every request on ids one worker owns) on 4 workers: spillover off,
   `explicit` (least-loaded peer) and `steal` (Dask work stealing).
3. Image-hit latency through the client against a plain Dask task round trip and a Dask
   actor call on the same cluster.
Prints markdown tables with machine and date; results go to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS, TAEF2 = SHARED / "corpus" / "ai-png", SHARED / "models" / "taef2"


def write_sources(folder: Path, size: int, crops: int) -> dict[str, bytes]:
    """1 + `crops` images per corpus PNG (whole image resized; centre, then corner crops): id -> PNG bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in sorted(CORPUS.glob("*.png")):
        rgb = Image.open(f).convert("RGB")
        w, h = rgb.size
        corners = [((w - size) // 2, (h - size) // 2), (0, 0), (w - size, 0), (0, h - size), (w - size, h - size)]
        images = [("r", rgb.resize((size, size), Image.Resampling.LANCZOS))]
        images += [(f"c{k}", rgb.crop((x, y, x + size, y + size))) for k, (x, y) in enumerate(corners[:crops])]
        for tag, im in images:
            path = folder / f"{tag}-{f.stem}.png"
            im.save(path)
            out[path.name] = path.read_bytes()
    return out


def build_archives(tmp: Path, size: int, crops: int) -> tuple[str, str, dict[str, bytes]]:
    """The latent archive (`lbdask migrate`) and a PNG archive of the same images (all kept)."""
    from lbdask.archive import Archive, CatalogRow

    if (tmp / "png").is_dir():   # --workdir of an earlier run: reuse its archives
        return str(tmp / "latent"), str(tmp / "png"), {p.name: p.read_bytes() for p in sorted((tmp / "src").iterdir())}
    sources = write_sources(tmp / "src", size, crops)
    latent = str(tmp / "latent")
    subprocess.run([sys.executable, "-m", "lbdask", "migrate", str(tmp / "src"), latent, "--weights", str(TAEF2),
                    "--workers", "1", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    arc = Archive.open(latent)
    png = Archive.create(str(tmp / "png"), arc.model_info, shard_size=arc.shard_size)
    refs = png.put_originals("b0", sources)
    png.commit("b0", [CatalogRow(id=i, status="kept", reason="PNG store", source_size=len(b),
                                 source_sha256=hashlib.sha256(b).hexdigest(), width=size, height=size, mode="RGB",
                                 stored_bytes=len(b), original=refs[i]) for i, b in sources.items()])
    return latent, str(tmp / "png"), sources


def trace_ids(n_requests: int, ids: list[str], tmp: Path) -> list[str]:
    """The first `n_requests` of a generated trace; its objects folded onto `ids` by popularity rank."""
    from lbdask.sim.trace import load_trace

    path = tmp / "trace.npz"
    subprocess.run([sys.executable, "-m", "lbdask", "trace", "generate", str(path), "--requests",
                    str(max(1000, n_requests * 20)), "--seed", "1"], check=True, stderr=subprocess.DEVNULL)
    objs = load_trace(path).id[:n_requests]
    uniq, counts = np.unique(objs, return_counts=True)
    rank = {o: r for r, o in enumerate(uniq[np.argsort(-counts, kind="stable")])}
    return [ids[rank[o] % len(ids)] for o in objs]


def zipf_ids(n_requests: int, ids: list[str], alpha: float, seed: int = 1) -> list[str]:
    """`n_requests` independent draws, P(rank r) ~ r^-alpha, ranks assigned to `ids` at random."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, len(ids) + 1, dtype=float) ** -alpha
    by_rank = rng.permutation(ids)
    return [str(by_rank[r]) for r in rng.choice(len(ids), size=n_requests, p=weights / weights.sum())]


def store_model(args):
    """The workers' fetch hook: an object store's first byte + scaled bytes at the bandwidth."""
    from lbdask.serve.store_latency import StoreLatency

    return StoreLatency(args.fetch_ms, args.bandwidth / args.object_scale)


def settings_for(name: str, cache_bytes: int, **worker):
    from lbdask.cache.tuner import TunerConfig
    from lbdask.serve.settings import ServeSettings

    s = ServeSettings()
    static = {"decode-all": 0.0, "imgstore": 1.0, "alpha=1": 1.0, "alpha=0": 0.0}
    s.cache = dataclasses.replace(s.cache, adaptive=name not in static)
    s.tuner = TunerConfig(alpha=static.get(name, 0.5), alpha_min=0.0, alpha_max=1.0, window=25, step=0.05)
    s.worker = dataclasses.replace(s.worker, cache_bytes=0 if name == "decode-all" else cache_bytes, **worker)
    return s


def totals(client) -> dict[str, float]:
    stats = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
    keys = ("image_hits", "latent_hits", "misses", "spillovers", "spilled_in", "decodes")
    ewma = {k: float(np.mean([s[k] for s in stats.values()])) for k in ("t_decode_ms", "t_fetch_ms")}
    return {k: sum(s[k] for s in stats.values()) for k in keys} | ewma | {"alpha": [s["alpha"] for s in stats.values()]}


def replay(address: str, dest: str, requests: list[str], concurrency: int) -> list[float]:
    """Closed-loop replay, `concurrency` readers; latency of each request in ms."""
    from lbdask.serve.client import AsyncServingClient

    async def main() -> list[float]:
        lat: list[float] = []
        queue = list(reversed(requests))
        async with await AsyncServingClient.connect(dest, address) as box:
            async def reader() -> None:
                while queue:
                    image_id = queue.pop()
                    t0 = time.perf_counter()
                    await box.read(image_id)
                    lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*(reader() for _ in range(concurrency)))
        return lat
    return asyncio.run(main())


def row(name: str, lat: list[float], extra: str = "") -> str:
    a = np.asarray(lat)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return f"| {name} | {a.mean():.0f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |{extra}"


def cluster(n: int):
    from distributed import Client

    from lbdask.cluster.connect import local_cluster
    from lbdask.cluster.settings import ClusterSettings

    lc = local_cluster(ClusterSettings(n_workers=n, threads_per_worker=1, dashboard_address=None), n)
    return lc, Client(lc)


def table4(args, latent: str, png: str, sources: dict[str, bytes], tmp: Path) -> list[str]:
    from lbdask.serve.deploy import install, warm

    ids = sorted(sources)
    if args.zipf > 0:
        stream, workload = zipf_ids(args.warmup + args.requests, ids, args.zipf), f"Zipf alpha = {args.zipf}"
    else:
        stream, workload = trace_ids(args.warmup + args.requests, ids, tmp), "`lbdask trace generate`, folded"
    warmup, requests = stream[:args.warmup], stream[args.warmup:]
    distinct = set(requests)
    wss = sum(len(sources[i]) for i in distinct)
    cache_bytes = int(args.cache_fraction * wss / args.workers)
    out = [f"Workload: {workload} over {len(ids)} images of {args.size} px; {args.warmup} warm-up requests "
           f"(not timed; none for Decode-All), then {len(requests)} timed requests on {len(distinct)} distinct images "
           f"(working set {wss / 1e6:.1f} MB as PNG), cache {cache_bytes / 1e6:.2f} MB per worker "
           f"({args.cache_fraction:.0%} of the working set over {args.workers} workers), "
           f"{args.concurrency} concurrent readers. Store model: {args.fetch_ms:.0f} ms first byte + stored bytes "
           f"x {args.object_scale:g} at {args.bandwidth:g} MB/s. Decode: runtime {args.runtime}, "
           f"precision {args.precision}.", "",
           "| system | mean ms | P50 | P95 | P99 | image / latent / miss | T_decode / T_fetch ms | final alpha |",
           "|---|---|---|---|---|---|---|---|"]
    results = {}
    lc, client = cluster(args.workers)
    with lc, client:
        for name in ("decode-all", "imgstore", "alpha=1", "alpha=0", "adaptive"):
            dest = png if name == "imgstore" else latent
            install(client, dest, settings_for(name, cache_bytes, spillover="off", **inference(args)), "taef2",
                    str(TAEF2), fetch_hook=store_model(args))
            warm(client, dest)
            if name != "decode-all" and warmup:
                replay(client.scheduler.address, dest, warmup, args.concurrency)
            before = totals(client)
            lat = replay(client.scheduler.address, dest, requests, args.concurrency)
            t = totals(client)
            tiers = [t[k] - before[k] for k in ("image_hits", "latent_hits", "misses")]
            frac = [k / max(1, sum(tiers)) for k in tiers]
            results[name] = (float(np.mean(lat)), frac, t)
            out.append(row(name, lat, " {:.2f} / {:.2f} / {:.2f} |".format(*frac)
                           + f" {t['t_decode_ms']:.0f} / {t['t_fetch_ms']:.0f} | "
                           + ", ".join(f"{a:.2f}" for a in t["alpha"]) + " |"))
            print(out[-1], flush=True)
        out += ["", *break_even(results), "", *hit_path(client, latent, ids[0], args)]
    return out


def break_even(results: dict) -> list[str]:
    """The T_decode each latent configuration would need for mean <= 0.85x ImgStore, from eq. 1
    of the paper with this run's tier fractions and latent fetch time (image hits cost ~0)."""
    target = 0.85 * results["imgstore"][0]
    out = [f"Target: mean <= 0.85 x ImgStore = {target:.0f} ms. Paper eq. 1 with each row's measured tier "
           "fractions and T_fetch (image hit ~ 0 ms): the mean a free decode would leave (misses' fetches "
           "alone) and the decode time that would meet the target:", "",
           "| system | measured mean / ImgStore | mean with a free decode (ms) | T_decode needed (ms) "
           "| T_decode measured (ms) |", "|---|---|---|---|---|"]
    for name in ("alpha=1", "alpha=0", "adaptive"):
        mean, (_, f_lat, f_miss), t = results[name]
        floor = f_miss * t["t_fetch_ms"]
        need = (target - floor) / max(1e-9, f_lat + f_miss)
        needed = f"{need:.0f}" if need > 0 else "none: the fetches alone exceed it"
        out.append(f"| {name} | {mean / results['imgstore'][0]:.2f} | {floor:.0f} | {needed} | {t['t_decode_ms']:.0f} |")
    return out


def inference(args) -> dict[str, str | None]:
    return {"runtime": args.runtime, "precision": args.precision}


class Echo:
    """A Dask actor holding one PNG: the actor alternative to the worker RPC handler."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self) -> bytes:
        return self.data


def hit_path(client, dest: str, image_id: str, args) -> list[str]:
    """Image-hit reads through the client vs a Dask task round trip vs an actor call."""
    from lbdask.serve.client import ServingClient
    from lbdask.serve.deploy import install, warm

    install(client, dest, settings_for("alpha=1", 50 * 2**20, spillover="off"), "taef2", str(TAEF2))
    warm(client, dest)
    n = args.hit_reads
    with ServingClient(dest, client.scheduler.address) as box:
        png = box.read(image_id)   # fills the owner's image tier (alpha = 1)
        hits = []
        for _ in range(n):
            t0 = time.perf_counter()
            box.read(image_id)
            hits.append((time.perf_counter() - t0) * 1000)
    tasks = []
    for i in range(n):
        t0 = time.perf_counter()
        client.submit(len, png, pure=False).result()
        tasks.append((time.perf_counter() - t0) * 1000)
    actor = client.submit(Echo, png, actor=True).result()
    calls = []
    for _ in range(n):
        t0 = time.perf_counter()
        actor.get().result()
        calls.append((time.perf_counter() - t0) * 1000)
    ratio = np.median(hits) / np.median(tasks)
    return [f"Image-hit path, {n} sequential reads of one {len(png) / 1e3:.0f} KB PNG (P50 client / P50 task = "
            f"{ratio:.2f}):", "", "| path | mean ms | P50 | P95 | P99 |", "|---|---|---|---|---|",
            row("client read, image hit (worker RPC handler)", hits), row("Dask actor call returning the PNG", calls),
            row("plain Dask task round trip (`submit(len, png).result()`)", tasks)]


def spillover(args, latent: str, sources: dict[str, bytes]) -> list[str]:
    from lbdask.routing.ring import ring_from_workers
    from lbdask.serve.deploy import install, warm

    out = [f"Skew: {args.skew_requests} requests, every one on the ids owned by one of {args.skew_workers} workers, "
           f"no cache (each read decodes), one decode per model call (max_batch 1), theta = 2, "
           f"{args.concurrency * 2} concurrent readers.", "",
           "| spillover | mean ms | P50 | P95 | P99 | spilled decodes |", "|---|---|---|---|---|---|"]
    lc, client = cluster(args.skew_workers)
    with lc, client:
        ring = ring_from_workers(sorted(client.scheduler_info(n_workers=-1)["workers"]))
        hot = ring.members[0]
        mine = [i for i in sorted(sources) if ring.owner(i) == hot]
        requests = [mine[k % len(mine)] for k in range(args.skew_requests)]
        for mode in ("off", "explicit", "steal"):
            install(client, latent, settings_for("decode-all", 0, spillover=mode, theta=2, max_batch=1,
                                                    **inference(args)),
                    "taef2", str(TAEF2), fetch_hook=store_model(args))
            warm(client, latent)
            lat = replay(client.scheduler.address, latent, requests, args.concurrency * 2)
            out.append(row(mode, lat, f" {totals(client)['spillovers']} |"))
            print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=240)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=120, help="untimed requests before the timed ones")
    ap.add_argument("--zipf", type=float, default=1.11, help="Zipf exponent of the requests (0: generated trace)")
    ap.add_argument("--fetch-ms", type=float, default=100.0, help="object-store first-byte latency")
    ap.add_argument("--bandwidth", type=float, default=90.0, help="object-store MB/s per request")
    ap.add_argument("--object-scale", type=float, help="object bytes = stored bytes x this (default (1024/size)^2)")
    ap.add_argument("--runtime", choices=("torch", "openvino", "auto"), help="decode runtime of the workers")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), help="decode precision of the workers")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--crops", type=int, default=5, choices=range(6), help="crops per corpus image (+ its resize)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-fraction", type=float, default=0.3)
    ap.add_argument("--skew-workers", type=int, default=4)
    ap.add_argument("--skew-requests", type=int, default=48)
    ap.add_argument("--hit-reads", type=int, default=200)
    ap.add_argument("--only", choices=("table4", "skew"), help="run one part (default: both)")
    ap.add_argument("--workdir", help="keep the archives here and reuse them next time (default: a temp folder)")
    args = ap.parse_args()
    args.object_scale = args.object_scale or (1024 / args.size) ** 2
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(args.workdir or d)
        tmp.mkdir(parents=True, exist_ok=True)
        latent, png, sources = build_archives(tmp, args.size, args.crops)
        start = os.getloadavg()[0]
        lines = table4(args, latent, png, sources, tmp) + [""] if args.only != "skew" else []
        lines += spillover(args, latent, sources) if args.only != "table4" else []
    print(machine_line(start))
    print("\n".join(lines))


def machine_line(load_at_start: float) -> str:
    """Machine, cores, load average at the start and now, and the date: the tables' header."""
    return (f"\n{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")


if __name__ == "__main__":
    main()
