"""Catalog at scale (issue 25): what a lookup, `ls` and a compaction cost as the catalog grows.

Builds catalogs of N kept rows straight through the catalog API (`Archive.create`, one
`Archive.commit` per batch of `--batch-rows`, as a migration commits them, then one
whole-job compaction), rows shaped like real ones (`catalog_rows.py`: the text chunks of
the shared corpus's AI PNGs, measured with `lbdask.image.pngio.probe`), on a folder and,
with `--s3`, on the local S3 server (moto, run as tests/support/s3_server.py runs it).
Per size: an absent id looked up before the compaction (every batch object is scanned),
the whole-job compaction (child process: time, RSS), cold lookups (a new `Catalog` per
lookup: empty process caches; OS page cache warm) of random present ids and of absent ids,
warm lookups (the same id again on the same `Catalog`), `lbdask ls` (child process: first
row, total, RSS), compaction of 64 new rows (8 batches of 8: time, bytes written) and, on
S3, store requests per lookup (counted by wrapping the s3fs client call). Every size is
compared with the smallest (growth factor).

Usage: python benchmarks/catalog_scale.py [--sizes 1000 10000 100000] [--s3] [--s3-sizes 1000 10000]
       [--big] (sizes over 100k) [--quick] [--json OUT] [--save-chunks FILE]
"""
from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from catalog_rows import Chunks, image_id, row_dict, save_chunks
from catalog_s3 import S3Server, count_requests
from proc_stats import child
from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.catalog import Catalog
from lbdask.archive.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ai-png"
MODEL = {"name": "bench", "fingerprint": "b" * 64, "latent_channels": 4, "downsample": 8, "config": {}}


def corpus_sample(folder: Path) -> list[Chunks]:
    """The preserved ancillary chunks of every PNG in `folder` (one list per image)."""
    from lbdask.image.pngio import probe

    return [[(c.type, c.data) for c in probe(Path(p).read_bytes()).chunks] for p in sorted(glob.glob(f"{folder}/*.png"))]


def commit_job(arc: Archive, lo: int, hi: int, job: str, batch_rows: int, sample: list[Chunks]) -> int:
    """Commit rows lo..hi-1 in batches of `batch_rows`; returns the number of batches."""
    k = 0
    for k, start in enumerate(range(lo, hi, batch_rows)):
        batch = f"keep-{job}-{k:07d}"
        arc.commit(batch, [CatalogRow.from_json(row_dict(i, sample, batch)) for i in range(start, min(start + batch_rows, hi))])
    return k + 1


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def lookup_times(arc: Archive, ids: list[str], counted: collections.Counter | None) -> tuple[list[float], list[int], float]:
    """(cold seconds per id, store requests per cold lookup, warm seconds median) over `ids`."""
    cold, requests, warm = [], [], []
    for image_id_ in ids:
        cat = Catalog(arc.loc, partitions=arc.catalog.default_partitions)
        before = sum(counted.values()) if counted is not None else 0
        t0 = time.perf_counter()
        cat.get_row(image_id_)
        cold.append(time.perf_counter() - t0)
        requests.append(sum(counted.values()) - before if counted is not None else 0)
        t0 = time.perf_counter()
        cat.get_row(image_id_)
        warm.append(time.perf_counter() - t0)
    return cold, requests, pct(warm, 0.5)


def written_bytes(arc: Archive, old: Manifest, new: Manifest, batches: list[str]) -> tuple[int, int]:
    """(bytes a compaction wrote: new partition files, folded copies, manifest; index bytes after it)."""
    fs = arc.loc.fs
    size = lambda key: fs.size(arc.loc.path(key))
    fresh = [k for p, k in new.files.items() if old.files.get(p) != k]
    wrote = sum(map(size, fresh)) + sum(fs.size(arc.catalog.folded_path(b)) for b in batches)
    wrote += fs.size(arc.catalog.manifests.path(new.generation))
    return wrote, sum(map(size, new.files.values()))


def measure(url: str, n: int, args: argparse.Namespace, sample: list[Chunks]) -> dict[str, float]:
    """Every figure for one catalog of n rows at `url` (created here)."""
    out: dict[str, float] = {}
    arc = Archive.create(url, MODEL)
    counted = count_requests(arc.loc.fs) if arc.loc.is_remote else None
    t0 = time.perf_counter()
    out["batches"] = commit_job(arc, 0, n, "a", args.batch_rows, sample)
    out["commit_s"] = time.perf_counter() - t0
    before = sum(counted.values()) if counted is not None else 0
    t0 = time.perf_counter()
    Catalog(arc.loc).get_row("absent/before-compaction.png")
    out["absent_uncompacted_s"] = time.perf_counter() - t0
    if counted is not None:
        out["absent_uncompacted_requests"] = sum(counted.values()) - before
    _, out["compact_job_s"], out["compact_job_rss_mb"], _ = child([sys.executable, __file__, "--compact-child", url])
    rng = random.Random(n)
    cold, requests, out["warm_ms"] = lookup_times(arc, [image_id(rng.randrange(n)) for _ in range(args.lookups)], counted)
    out["cold_p50_ms"], out["cold_p99_ms"] = pct(cold, 0.5) * 1e3, pct(cold, 0.99) * 1e3
    out["warm_ms"] *= 1e3
    absent, absent_requests, _ = lookup_times(arc, [f"absent/{i}.png" for i in range(args.lookups // 4)], counted)
    out["absent_p50_ms"], out["absent_p99_ms"] = pct(absent, 0.5) * 1e3, pct(absent, 0.99) * 1e3
    if counted is not None:
        out["requests_per_lookup"] = pct(requests, 0.5)
        out["requests_per_absent"] = pct(absent_requests, 0.5)
        before_one = collections.Counter(counted)
        Catalog(arc.loc).get_row(image_id(0))
        out["kinds_per_lookup"] = dict(counted - before_one)  # type: ignore[assignment]  # for the record
    out["ls_first_s"], out["ls_total_s"], out["ls_rss_mb"], _ = child([sys.executable, "-m", "lbdask", "ls", url])
    old = arc.catalog.manifest()
    batches = [f"keep-b-{k:07d}" for k in range(commit_job(arc, n, n + 64, "b", 8, sample))]
    t0 = time.perf_counter()
    arc.compact()
    out["compact64_s"] = time.perf_counter() - t0
    new = arc.catalog.manifest()
    out["compact64_written_kb"], index_bytes = (b / 1024 for b in written_bytes(arc, old, new, batches))
    out["index_mb"] = index_bytes / 1024
    out["partitions_rewritten"] = sum(1 for p, k in new.files.items() if old.files.get(p) != k)
    return out


FIGURES = [  # key, label, format
    ("commit_s", "commit N rows (batches of --batch-rows), s", "{:.1f}"),
    ("absent_uncompacted_s", "absent id before compaction (all batches scanned), s", "{:.2f}"),
    ("absent_uncompacted_requests", "  store requests of that lookup", "{:.0f}"),
    ("compact_job_s", "compaction of the whole job, s", "{:.1f}"),
    ("compact_job_rss_mb", "  its RSS (child process), MB", "{:.0f}"),
    ("cold_p50_ms", "cold lookup of a random id p50, ms", "{:.2f}"),
    ("cold_p99_ms", "cold lookup p99, ms", "{:.2f}"),
    ("absent_p50_ms", "cold lookup of an absent id p50, ms", "{:.2f}"),
    ("absent_p99_ms", "  absent p99, ms", "{:.2f}"),
    ("warm_ms", "warm lookup (same id, same Catalog) p50, ms", "{:.2f}"),
    ("requests_per_lookup", "store requests per cold lookup (p50)", "{:.0f}"),
    ("requests_per_absent", "store requests per absent lookup (p50)", "{:.0f}"),
    ("ls_first_s", "`lbdask ls`: first row, s", "{:.2f}"),
    ("ls_total_s", "`lbdask ls`: total, s", "{:.2f}"),
    ("ls_rss_mb", "`lbdask ls`: RSS, MB", "{:.0f}"),
    ("compact64_s", "compaction of 64 new rows, s", "{:.2f}"),
    ("compact64_written_kb", "  bytes it wrote, KB", "{:.0f}"),
    ("partitions_rewritten", "  partitions it rewrote (of 256)", "{:.0f}"),
    ("index_mb", "index size after it, MB", "{:.1f}"),
]


def table(results: dict[int, dict[str, float]], title: str) -> str:
    sizes = sorted(results)
    head = f"\n{title}\n| figure | " + " | ".join(f"{n:,}" for n in sizes) + " |\n|---|" + "---:|" * len(sizes)
    lines = [head]
    for key, label, fmt in FIGURES:
        if not all(key in results[n] for n in sizes):
            continue
        base = results[sizes[0]][key]
        cells = [fmt.format(results[n][key]) + (f" ({results[n][key] / base:.1f}x)" if i and base else "")
                 for i, n in enumerate(sizes)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_sizes(prefix: str, sizes: list[int], args: argparse.Namespace, sample: list[Chunks]) -> dict[int, dict[str, float]]:
    results = {}
    for n in sizes:
        t0 = time.perf_counter()
        results[n] = measure(f"{prefix}/n{n}", n, args, sample)
        print(f"# {prefix} n={n}: {json.dumps(results[n])} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--s3", action="store_true", help="also on the local S3 server (moto)")
    ap.add_argument("--s3-sizes", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--big", action="store_true", help="allow sizes over 100,000 (1M: ~1 h, ~10 GB of disk)")
    ap.add_argument("--batch-rows", type=int, default=8, help="rows per committed batch (jobs.yaml batch_size: 8)")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="sizes 200 and 1000, 40 lookups (a smoke run)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--save-chunks", help="write the corpus chunk sample here (for catalog_engines.py)")
    ap.add_argument("--compact-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compact_child:
        print(json.dumps(Archive.open(args.compact_child, mode="a").compact()))
        return
    if args.quick:
        args.sizes, args.s3_sizes, args.lookups = [200, 1_000], [200, 1_000], 40
    if max(args.sizes + (args.s3_sizes if args.s3 else [])) > 100_000 and not args.big:
        ap.error("sizes over 100,000 need --big")
    sample = corpus_sample(CORPUS)
    if args.save_chunks:
        save_chunks(args.save_chunks, sample)
    sizes = sorted(sum((len(d) for _, d in c), 0) for c in sample)
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; corpus chunk bytes per image: "
          f"median {sizes[len(sizes) // 2]:,}, max {sizes[-1]:,} ({len(sample)} images)", flush=True)
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="catalog-scale-") as root:
        all_results["folder"] = run_sizes(root, sorted(args.sizes), args, sample)
    if args.s3:
        with S3Server() as bucket:
            all_results["s3"] = run_sizes(f"s3://{bucket}", sorted(args.s3_sizes), args, sample)
    for where, results in all_results.items():
        print(table(results, f"catalog on {where} (batches of {args.batch_rows} rows; growth vs the smallest size)"))
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main()
