"""Read latency through a live serving cluster: Table-4-style comparison, spillover, hit path.

    python benchmarks/serve_latency.py [--requests 240] [--concurrency 4] [--fetch-ms 100]

On one run, against local Dask clusters (worker processes, one thread each):
1. A trace from `lbdask trace generate`, folded onto an archive of 256 px corpus images
   (migrated with `lbdask migrate`) whose every archive fetch waits `--fetch-ms` (object-store
   latency), replayed closed-loop with `--concurrency` readers on 2 workers, for
   Decode-All (no cache), ImgStore (PNG archive + an image-only LRU of the same bytes),
   alpha=1, alpha=0 and adaptive alpha: mean/P50/P95/P99 and tier fractions.
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


def write_sources(folder: Path, size: int) -> dict[str, bytes]:
    """Two 256 px images per corpus PNG (whole image resized, centre crop): id -> PNG bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in sorted(CORPUS.glob("*.png")):
        rgb = Image.open(f).convert("RGB")
        w, h = rgb.size
        crop = rgb.crop(((w - size) // 2, (h - size) // 2, (w + size) // 2, (h + size) // 2))
        for tag, im in (("r", rgb.resize((size, size), Image.Resampling.LANCZOS)), ("c", crop)):
            path = folder / f"{tag}-{f.stem}.png"
            im.save(path)
            out[path.name] = path.read_bytes()
    return out


def build_archives(tmp: Path, size: int) -> tuple[str, str, dict[str, bytes]]:
    """The latent archive (`lbdask migrate`) and a PNG archive of the same images (all kept)."""
    from lbdask.archive import Archive, CatalogRow

    if (tmp / "png").is_dir():   # --workdir of an earlier run: reuse its archives
        return str(tmp / "latent"), str(tmp / "png"), {p.name: p.read_bytes() for p in sorted((tmp / "src").iterdir())}
    sources = write_sources(tmp / "src", size)
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
    from lbdask.trace import load_trace

    path = tmp / "trace.npz"
    subprocess.run([sys.executable, "-m", "lbdask", "trace", "generate", str(path), "--requests",
                    str(max(1000, n_requests * 20)), "--seed", "1"], check=True, stderr=subprocess.DEVNULL)
    objs = load_trace(path).id[:n_requests]
    uniq, counts = np.unique(objs, return_counts=True)
    rank = {o: r for r, o in enumerate(uniq[np.argsort(-counts, kind="stable")])}
    return [ids[rank[o] % len(ids)] for o in objs]


def settings_for(name: str, cache_bytes: int, fetch_ms: float, **runtime):
    from lbdask.tuner import TunerConfig
    from lbdask.serve.settings import ServeSettings

    s = ServeSettings()
    static = {"decode-all": 0.0, "imgstore": 1.0, "alpha=1": 1.0, "alpha=0": 0.0}
    s.cache = dataclasses.replace(s.cache, adaptive=name not in static)
    s.tuner = TunerConfig(alpha=static.get(name, 0.5), alpha_min=0.0, alpha_max=1.0, window=25, step=0.05)
    s.runtime = dataclasses.replace(s.runtime, cache_bytes=0 if name == "decode-all" else cache_bytes,
                                    fetch_delay_ms=fetch_ms, **runtime)
    return s


def totals(client) -> dict[str, float]:
    stats = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
    keys = ("image_hits", "latent_hits", "misses", "spillovers", "spilled_in", "decodes")
    return {k: sum(s[k] for s in stats.values()) for k in keys} | {"alpha": [s["alpha"] for s in stats.values()]}


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

    from lbdask.migrate.cluster import local_cluster
    from lbdask.migrate.settings import ClusterSettings

    lc = local_cluster(ClusterSettings(n_workers=n, threads_per_worker=1, dashboard_address=None), n)
    return lc, Client(lc)


def table4(args, latent: str, png: str, sources: dict[str, bytes], tmp: Path) -> list[str]:
    from lbdask.serve.deploy import install, warm

    requests = trace_ids(args.requests, sorted(sources), tmp)
    distinct = set(requests)
    wss = sum(len(sources[i]) for i in distinct)
    cache_bytes = int(args.cache_fraction * wss / args.workers)
    out = [f"Trace: {len(requests)} requests on {len(distinct)} distinct 256 px images (working set {wss / 1e6:.1f} MB),"
           f" cache {cache_bytes / 1e6:.2f} MB per worker ({args.cache_fraction:.0%} of the working set over "
           f"{args.workers} workers), fetch latency {args.fetch_ms:.0f} ms, {args.concurrency} concurrent readers.", "",
           "| system | mean ms | P50 | P95 | P99 | image / latent / miss | final alpha |", "|---|---|---|---|---|---|---|"]
    lc, client = cluster(args.workers)
    with lc, client:
        for name in ("decode-all", "imgstore", "alpha=1", "alpha=0", "adaptive"):
            dest = png if name == "imgstore" else latent
            install(client, dest, settings_for(name, cache_bytes, args.fetch_ms, spillover="off"), "taef2", str(TAEF2))
            warm(client, dest)
            lat = replay(client.scheduler.address, dest, requests, args.concurrency)
            t = totals(client)
            n = max(1, t["image_hits"] + t["latent_hits"] + t["misses"])
            tiers = f" {t['image_hits'] / n:.2f} / {t['latent_hits'] / n:.2f} / {t['misses'] / n:.2f} |"
            out.append(row(name, lat, tiers + " " + ", ".join(f"{a:.2f}" for a in t["alpha"]) + " |"))
            print(out[-1], flush=True)
        out += ["", *hit_path(client, latent, sorted(sources)[0], args)]
    return out


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

    install(client, dest, settings_for("alpha=1", 50 * 2**20, 0.0, spillover="off"), "taef2", str(TAEF2))
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
    from lbdask.ring import ring_from_workers
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
            install(client, latent, settings_for("decode-all", 0, args.fetch_ms, spillover=mode, theta=2,
                                                    max_batch=1),
                    "taef2", str(TAEF2))
            warm(client, latent)
            lat = replay(client.scheduler.address, latent, requests, args.concurrency * 2)
            out.append(row(mode, lat, f" {totals(client)['spillovers']} |"))
            print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=240)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--fetch-ms", type=float, default=100.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-fraction", type=float, default=0.3)
    ap.add_argument("--skew-workers", type=int, default=4)
    ap.add_argument("--skew-requests", type=int, default=48)
    ap.add_argument("--hit-reads", type=int, default=200)
    ap.add_argument("--workdir", help="keep the archives here and reuse them next time (default: a temp folder)")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(args.workdir or d)
        tmp.mkdir(parents=True, exist_ok=True)
        latent, png, sources = build_archives(tmp, args.size)
        lines = table4(args, latent, png, sources, tmp) + [""] + spillover(args, latent, sources)
    load = os.getloadavg()
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} at the end, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
