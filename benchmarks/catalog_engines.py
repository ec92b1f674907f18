"""Catalog engines compared (issue 25): lbdask's catalog v2, SlateDB, Lance and Delta Lake.

Each engine stores the same rows as `catalog_scale.py` builds (`catalog_rows.py`, the text
chunks of the shared corpus), as catalog v2 indexes them: the chunks outside the row
(lbdask writes them to `meta/`, not counted as catalog bytes; the libraries are given the
row with its `chunks_ref` only), key `id`, value the row's JSON line, compressed the
engine's own way (catalog_engine_adapters.py), on a local folder. Per engine and size: load
N rows in commits of `--load-rows` (lbdask also compacts every `compact_every_batches`
commits, as a migration does), compaction (lbdask `Archive.compact`, Delta
`optimize.z_order` on `id`, Lance `optimize.compact_files` with its BTREE index on `id`
rebuilt, SlateDB: memtable flush, then one submitted compaction waited for), one commit
of 64 rows (seconds, bytes added on disk), cold lookups (a new handle per lookup: open +
get) of random and absent ids p50/p99, warm lookups (the same id again on that handle),
lookups of other ids through one open handle, with `--s3` the same on the local S3 server
with its requests per lookup (counted from the server's request log), and the install size
(the files of the package and of every package it requires, from their RECORD). Runs in a
separate venv that also holds fsspec, s3fs, PyYAML, zarr and pcodec (what `lbdask.archive` imports):
    python3 -m venv /tmp/engines && /tmp/engines/bin/pip install slatedb pylance deltalake pyarrow numpy fsspec s3fs pyyaml zarr pcodec
    /tmp/engines/bin/python benchmarks/catalog_engines.py --chunks CHUNKS.json [--sizes 10000 100000] [--quick]
(CHUNKS.json: `python benchmarks/catalog_scale.py --save-chunks CHUNKS.json` in lbdask's venv.)
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import json
import os
import platform
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from catalog_engine_adapters import ENGINES
from catalog_rows import Chunks, image_id, load_chunks, row_dict
from catalog_s3 import S3Server, logged_requests


def rows(lo: int, hi: int, sample: list[Chunks], batch: str) -> list[dict]:
    return [row_dict(i, sample, batch) for i in range(lo, hi)]


def chunks_of(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def du(path: str, skip: tuple[str, ...] = ()) -> float:
    """Bytes of the files under `path`, but those under its top-level folders `skip`."""
    if path.startswith("s3://"):
        return float("nan")  # bytes are compared on the folder
    return sum(f.stat().st_size for f in Path(path).rglob("*")
               if f.is_file() and f.relative_to(path).parts[0] not in skip)


def install_mb(dist: str, seen: set[str] | None = None) -> float:
    """MB of the files of `dist` and of every distribution it requires (not extras), once each."""
    seen = set() if seen is None else seen
    key = re.sub(r"[-_.]+", "-", dist).lower()
    if key in seen:
        return 0.0
    seen.add(key)
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return 0.0
    total = sum((d.locate_file(f).stat().st_size for f in d.files or [] if d.locate_file(f).is_file()), 0) / 2**20
    for req in d.requires or []:
        if "extra ==" not in req:
            total += install_mb(re.split(r"[ ;<>=!~\[(]", req.strip())[0], seen)
    return total


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def open_handle(engine, path: str, ids: list[str]) -> list[float]:
    """Seconds per lookup of each of `ids` (others each time) through one handle opened before."""
    handle = engine.open(path)
    engine.get(handle, "absent/warm-up.png")
    times = []
    for i in ids:
        t0 = time.perf_counter()
        engine.get(handle, i)
        times.append(time.perf_counter() - t0)
    engine.close(handle)
    return times


def lookups(engine, path: str, ids: list[str]) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    for i in ids:
        t0 = time.perf_counter()
        handle = engine.open(path)
        engine.get(handle, i)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.get(handle, i)
        warm.append(time.perf_counter() - t0)
        engine.close(handle)
    return cold, warm


def measure(engine, path: str, n: int, args: argparse.Namespace, sample: list[Chunks]) -> dict[str, float]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for lo, hi in chunks_of(n, args.load_rows):
        engine.write(path, rows(lo, hi, sample, f"keep-a-{lo // 8:07d}"))
    engine.finish_load(path)
    out["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        engine.compact(path, args.compact_timeout)
        out["compact_s"] = time.perf_counter() - t0
    except TimeoutError:  # recorded as not done; the lookups still run (on the uncompacted tables)
        out["compact_s"] = float("nan")
    out["disk_mb"] = du(path, engine.side) / 2**20
    before = du(path, engine.side)
    new = rows(n, n + 64, sample, "keep-b-0000000")
    t0 = time.perf_counter()
    engine.write(path, new)
    out["commit64_s"] = time.perf_counter() - t0
    out["commit64_kb"] = (du(path, engine.side) - before) / 1024
    rng = random.Random(n)
    assert engine.get(engine.open(path), new[0]["id"]) is not None, "the 64 new rows are not readable"
    cold, warm = lookups(engine, path, [image_id(rng.randrange(n)) for _ in range(args.lookups)])
    out["cold_p50_ms"], out["cold_p99_ms"], out["warm_ms"] = pct(cold, .5) * 1e3, pct(cold, .99) * 1e3, pct(warm, .5) * 1e3
    out["handle_p50_ms"] = pct(open_handle(engine, path, [image_id(rng.randrange(n)) for _ in range(args.lookups)]), .5) * 1e3
    absent, _ = lookups(engine, path, [f"absent/{i}.png" for i in range(max(4, args.lookups // 4))])
    out["absent_p50_ms"], out["absent_p99_ms"] = pct(absent, .5) * 1e3, pct(absent, .99) * 1e3
    if args.s3_log and path.startswith("s3://"):
        for key, ids in (("requests_per_lookup", [image_id(rng.randrange(n)) for _ in range(5)]),
                         ("requests_per_absent", [f"absent/x{i}.png" for i in range(5)])):
            before = logged_requests(args.s3_log)
            lookups(engine, path, ids)
            out[key] = (logged_requests(args.s3_log) - before) / len(ids)
        handle = engine.open(path)
        before = logged_requests(args.s3_log)
        for _ in range(5):
            engine.get(handle, image_id(rng.randrange(n)))
        out["requests_per_handle_lookup"] = (logged_requests(args.s3_log) - before) / 5
        engine.close(handle)
    engine.done(path)
    return out


FIGURES = [("load_s", "load N rows, s", "{:.1f}"), ("compact_s", "compaction, s", "{:.2f}"),
           ("disk_mb", "on disk after it, MB", "{:.0f}"), ("commit64_s", "commit of 64 rows, s", "{:.3f}"),
           ("commit64_kb", "  bytes it added, KB", "{:.0f}"), ("cold_p50_ms", "cold lookup p50, ms", "{:.2f}"),
           ("cold_p99_ms", "cold lookup p99, ms", "{:.2f}"), ("absent_p50_ms", "cold absent id p50, ms", "{:.2f}"),
           ("absent_p99_ms", "cold absent id p99, ms", "{:.2f}"), ("warm_ms", "warm lookup p50, ms", "{:.3f}"),
           ("handle_p50_ms", "open handle, another random id p50, ms", "{:.2f}"),
           ("requests_per_handle_lookup", "S3 requests per lookup on an open handle", "{:.1f}"),
           ("requests_per_lookup", "S3 requests per cold lookup (open + get)", "{:.1f}"),
           ("requests_per_absent", "S3 requests per cold absent lookup", "{:.1f}")]


def run_all(args: argparse.Namespace, sample: list[Chunks], options: dict[str, str], prefix: str,
            sizes: list[int]) -> dict:
    """Every engine at every size, on fresh folders (prefix "") or under an s3:// prefix."""
    results: dict = {}
    for name in args.engines:
        engine = ENGINES[name](options)
        seen: set[str] = set()
        size = sum(install_mb(dist, seen) for dist in (engine.dist, *engine.needs) if dist)
        results[name] = {"version": md.version(engine.dist) if engine.dist else "v2", "install_mb": size}
        for n in sizes:
            root = f"{prefix}/{name}-{n}" if prefix else tempfile.mkdtemp(prefix=f"engine-{name}-")
            try:
                results[name][n] = measure(engine, f"{root}/db", n, args, sample)
            finally:
                if not prefix:
                    shutil.rmtree(root, ignore_errors=True)
            print(f"# {name} {prefix or 'folder'} n={n}: {json.dumps(results[name][n])}", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", required=True, help="corpus chunk sample (catalog_scale.py --save-chunks)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="on a folder (none: S3 only)")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    ap.add_argument("--load-rows", type=int, default=1_000, help="rows per commit while loading")
    ap.add_argument("--lookups", type=int, default=100)
    ap.add_argument("--compact-timeout", type=float, default=600.0, help="seconds to wait for SlateDB's compactor")
    ap.add_argument("--s3", action="store_true", help="also on the local S3 server (moto; requests from its log)")
    ap.add_argument("--s3-sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--moto-python", default="/work/main/.venv/bin/python", help="a Python with moto (lbdask's venv)")
    ap.add_argument("--quick", action="store_true", help="1,000 rows, 20 lookups (a smoke run)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.s3_sizes, args.lookups = [1_000], [1_000], 20
    sample = load_chunks(args.chunks)
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}", flush=True)
    args.s3_log = None
    results = run_all(args, sample, {}, "", args.sizes)
    if args.s3:
        with tempfile.TemporaryDirectory() as logs:
            args.s3_log = f"{logs}/requests.log"
            with S3Server(args.moto_python, log=args.s3_log) as bucket:
                options = {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true",
                           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
                results["s3"] = run_all(args, sample, options, f"s3://{bucket}", args.s3_sizes)
    for where, found, sizes in (("folder", results, args.sizes), ("S3 (moto)", results.get("s3"), args.s3_sizes)):
        for n in sizes if found else []:
            print(f"\n| {n:,} rows on {where} | " + " | ".join(f"{e} {found[e]['version']}" for e in args.engines) + " |")
            print("|---|" + "---:|" * len(args.engines))
            for key, label, fmt in FIGURES:
                if key in found[args.engines[0]][n]:
                    print(f"| {label} | " + " | ".join(fmt.format(found[e][n][key]) for e in args.engines) + " |")
    print("| install size (with dependencies), MB | " + " | ".join(f"{results[e]['install_mb']:.0f}" for e in args.engines) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
