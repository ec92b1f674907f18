"""Catalog at scale (issue 25): what a lookup, `ls` and a compaction cost as the catalog grows.

Builds catalogs of N kept rows straight through the catalog API (`Archive.create`, one
`Archive.commit` per batch of `--batch-rows`, as a migration commits them, with a
compaction after every `--compact-every` batches as the v2 driver folds during a job, then
a final compaction), rows shaped like real ones (`catalog_rows.py`: the text chunks of the
shared corpus's AI PNGs, measured with `lbdask.image.pngio.probe`), on a folder and, with
`--s3`, on the local S3 server (moto, run as tests/support/s3_server.py runs it). Per size:
the bytes the build's compactions wrote (against the final index: write amplification), an
absent id looked up before the final compaction, the final compaction (child process:
time, RSS), cold lookups (a new `Catalog` per lookup: empty process caches; OS page cache
warm) of random present ids and of absent ids, warm lookups (the same id again on the same
`Catalog`), store requests per lookup (tests/support/store_requests.py: fsspec calls on a
folder, HTTP requests on S3; LISTs apart), `lbdask ls` (child process: first row, total,
RSS) and compaction of 64 new rows (8 batches of 8: time, bytes written). Every size is
compared with the smallest (growth factor).

Usage: python benchmarks/catalog_scale.py [--sizes 1000 10000 100000] [--s3] [--s3-sizes 1000 10000]
       [--big] (sizes over 100k) [--quick] [--json OUT] [--save-chunks FILE]
       [--batch-rows 8] [--compact-every 64]
"""
from __future__ import annotations

import argparse
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
from catalog_s3 import S3Server
from proc_stats import child
from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.catalog import Catalog
from lbdask.archive.manifest import Manifest
from tests.support.store_requests import counting

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ai-png"
MODEL = {"name": "bench", "fingerprint": "b" * 64, "latent_channels": 4, "downsample": 8, "config": {}}


def corpus_sample(folder: Path) -> list[Chunks]:
    """The preserved ancillary chunks of every PNG in `folder` (one list per image)."""
    from lbdask.image.pngio import probe

    return [[(c.type, c.data) for c in probe(Path(p).read_bytes()).chunks] for p in sorted(glob.glob(f"{folder}/*.png"))]


def commit_job(arc: Archive, lo: int, hi: int, job: str, batch_rows: int, sample: list[Chunks],
               compact_every: int = 0, written: list[int] | None = None) -> int:
    """Commit rows lo..hi-1 in batches of `batch_rows`, compacting after every `compact_every`
    batches (0: never; as the migration driver does during a job), adding the bytes each
    compaction wrote to `written`; returns the number of batches."""
    k = 0
    for k, start in enumerate(range(lo, hi, batch_rows)):
        batch = f"keep-{job}-{k:07d}"
        arc.commit(batch, [CatalogRow.from_json(row_dict(i, sample, batch)) for i in range(start, min(start + batch_rows, hi))])
        if compact_every and (k + 1) % compact_every == 0:
            old = arc.catalog.refresh().manifest
            arc.compact()
            if written is not None:
                written.append(bytes_written(arc, old, arc.catalog.refresh().manifest)[0])
    return k + 1


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def lookup_times(arc: Archive, ids: list[str]) -> tuple[list[float], list[float]]:
    """(cold seconds per id: a fresh `Catalog` each, warm seconds: the same id again on it)."""
    cold, warm = [], []
    for image_id_ in ids:
        cat = Catalog(arc.loc)
        t0 = time.perf_counter()
        cat.get_row(image_id_)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cat.get_row(image_id_)
        warm.append(time.perf_counter() - t0)
    return cold, warm


def lookup_requests(arc: Archive, ids: list[str]) -> tuple[list[int], list[int], list[int]]:
    """Store requests per cold lookup, LISTs among them, and requests of the warm repeat (counted
    by tests/support/store_requests.py: fsspec calls and durable writes on a folder, HTTP
    requests on S3)."""
    cold, lists, warm = [], [], []
    with counting(arc.loc) as seen:
        for image_id_ in ids:
            cat = Catalog(arc.loc)
            seen.reset()
            cat.get_row(image_id_)
            cold.append(seen.total)
            lists.append(seen.lists)
            seen.reset()
            cat.get_row(image_id_)
            warm.append(seen.total)
    return cold, lists, warm


def bytes_written(arc: Archive, old: Manifest, new: Manifest) -> tuple[int, int]:
    """(bytes a compaction wrote: new runs, folded copies, manifest and hint; index bytes after it)."""
    fs = arc.loc.fs
    known = {r.key for r in old.runs}
    wrote = sum(r.size for r in new.runs if r.key not in known)
    wrote += sum(fs.size(arc.catalog.folded_path(b)) for b in new.folded)
    wrote += 2 * fs.size(arc.catalog.manifests.path(new.generation))  # the generation and latest.json
    return wrote, sum(r.size for r in new.runs)


def lookup_figures(arc: Archive, n: int, args: argparse.Namespace, out: dict[str, float]) -> None:
    """Cold and warm lookups of random present ids and of absent ids: times and requests."""
    rng = random.Random(n)
    present = [image_id(rng.randrange(n)) for _ in range(args.lookups)]
    absent = [f"absent/{i}.png" for i in range(args.lookups // 4)]
    cold, warm = lookup_times(arc, present)
    out["cold_p50_ms"], out["cold_p99_ms"] = pct(cold, 0.5) * 1e3, pct(cold, 0.99) * 1e3
    out["warm_p50_ms"], out["warm_p99_ms"] = pct(warm, 0.5) * 1e3, pct(warm, 0.99) * 1e3
    cold, _ = lookup_times(arc, absent)
    out["absent_p50_ms"], out["absent_p99_ms"] = pct(cold, 0.5) * 1e3, pct(cold, 0.99) * 1e3
    requests, lists, warm_requests = lookup_requests(arc, present[:40])
    out["requests_per_lookup"], out["requests_max"] = pct(requests, 0.5), max(requests)
    out["lists_per_lookup"], out["requests_warm"] = max(lists), max(warm_requests)
    requests, lists, _ = lookup_requests(arc, absent[:20])
    out["requests_per_absent"], out["lists_per_absent"] = max(requests), max(lists)


def measure(url: str, n: int, args: argparse.Namespace, sample: list[Chunks]) -> dict[str, float]:
    """Every figure for one catalog of n rows at `url` (created here)."""
    out: dict[str, float] = {}
    arc = Archive.create(url, MODEL)
    written: list[int] = []
    t0 = time.perf_counter()
    out["batches"] = commit_job(arc, 0, n, "a", args.batch_rows, sample, args.compact_every, written)
    out["commit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Catalog(arc.loc).get_row("absent/before-compaction.png")
    out["absent_uncompacted_s"] = time.perf_counter() - t0
    old = arc.catalog.refresh().manifest
    _, out["compact_job_s"], out["compact_job_rss_mb"], _ = child([sys.executable, __file__, "--compact-child", url])
    new = arc.catalog.refresh().manifest
    written.append(bytes_written(arc, old, new)[0])
    runs = new.runs
    out["build_compactions"] = len(written) - 1
    out["runs"], out["index_mb"] = len(runs), sum(r.size for r in runs) / 2**20
    out["footers_kb"] = sum(r.footer_size for r in runs) / 1024  # what a fresh handle reads before a block
    out["build_written_mb"] = sum(written) / 2**20
    out["write_amplification"] = sum(written) / max(1, sum(r.size for r in runs))
    lookup_figures(arc, n, args, out)
    out["ls_first_s"], out["ls_total_s"], out["ls_rss_mb"], _ = child([sys.executable, "-m", "lbdask", "ls", url])
    old = arc.catalog.refresh().manifest
    commit_job(arc, n, n + 64, "b", 8, sample)
    t0 = time.perf_counter()
    arc.compact()
    out["compact64_s"] = time.perf_counter() - t0
    wrote, _ = bytes_written(arc, old, arc.catalog.refresh().manifest)
    out["compact64_written_kb"] = wrote / 1024
    return out


FIGURES = [  # key, label, format
    ("commit_s", "build: commit N rows (batches of --batch-rows, compaction every --compact-every), s", "{:.1f}"),
    ("build_compactions", "  compactions during the build (the final one apart)", "{:.0f}"),
    ("build_written_mb", "  bytes all compactions wrote (runs, folded copies, manifests), MB", "{:.1f}"),
    ("write_amplification", "  written / final index size", "{:.1f}"),
    ("absent_uncompacted_s", "absent id before the final compaction, s", "{:.3f}"),
    ("compact_job_s", "final compaction (child process), s", "{:.1f}"),
    ("compact_job_rss_mb", "  its RSS, MB", "{:.0f}"),
    ("runs", "runs after it", "{:.0f}"),
    ("index_mb", "index size (runs), MB", "{:.1f}"),
    ("footers_kb", "  footers of the runs (read by a cold lookup), KB", "{:.0f}"),
    ("cold_p50_ms", "cold lookup (fresh Catalog) of a random id p50, ms", "{:.2f}"),
    ("cold_p99_ms", "cold lookup p99, ms", "{:.2f}"),
    ("absent_p50_ms", "cold lookup of an absent id p50, ms", "{:.2f}"),
    ("absent_p99_ms", "  absent p99, ms", "{:.2f}"),
    ("warm_p50_ms", "warm lookup (same id, same Catalog) p50, ms", "{:.3f}"),
    ("warm_p99_ms", "warm lookup p99, ms", "{:.3f}"),
    ("requests_per_lookup", "store requests per cold lookup (p50)", "{:.0f}"),
    ("requests_max", "  max", "{:.0f}"),
    ("lists_per_lookup", "  LISTs among them (max)", "{:.0f}"),
    ("requests_warm", "store requests per warm lookup (max)", "{:.0f}"),
    ("requests_per_absent", "store requests per cold absent lookup (max)", "{:.0f}"),
    ("lists_per_absent", "  LISTs among them (max)", "{:.0f}"),
    ("ls_first_s", "`lbdask ls`: first row, s", "{:.2f}"),
    ("ls_total_s", "`lbdask ls`: total, s", "{:.2f}"),
    ("ls_rss_mb", "`lbdask ls`: RSS, MB", "{:.0f}"),
    ("compact64_s", "compaction of 64 new rows (8 batches of 8), s", "{:.2f}"),
    ("compact64_written_kb", "  bytes it wrote, KB", "{:.0f}"),
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
    ap.add_argument("--compact-every", type=int, default=64, help="compact after every N batches (0: only at the end)")
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
