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
       1M / 10M (docs/benchmarks.md "Catalog v2 at 1 M and 10 M"): --big --shared-meta (rows reference
       chunks written once, catalog_build.py) --keep DIR --phase build|measure (keep the catalog, measure
       it later; catalog_direct.py writes the same runs faster), --no-ls (catalog_commands.py runs it),
       --s3 --s3-sizes N --s3-from (upload the kept catalog to the S3 server and measure there).
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from catalog_build import kept_row, write_sample
from catalog_rows import Chunks, image_id, row_dict, save_chunks
from catalog_s3 import S3Server
from catalog_table import table
from proc_stats import child
from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.catalog import Catalog
from lbdask.archive.lru import LRU
from lbdask.archive.manifest import Manifest
from tests.support.store_requests import counting

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ai-png"
MakeRow = Callable[[int, str], CatalogRow]
MODEL = {"name": "bench", "fingerprint": "b" * 64, "latent_channels": 4, "downsample": 8, "config": {}}


def corpus_sample(folder: Path) -> list[Chunks]:
    """The preserved ancillary chunks of every PNG in `folder` (one list per image)."""
    from lbdask.image.pngio import probe

    return [[(c.type, c.data) for c in probe(Path(p).read_bytes()).chunks] for p in sorted(glob.glob(f"{folder}/*.png"))]


def corpus_rows(sample: list[Chunks]) -> MakeRow:
    """Row i of batch `batch` carrying a corpus image's chunks (`Archive.commit` moves them to `meta/`)."""
    return lambda i, batch: CatalogRow.from_json(row_dict(i, sample, batch))


def shared_rows(arc: Archive, sample: list[Chunks]) -> MakeRow:
    """Rows referencing the sample's chunks written once into `arc` (`catalog_build.py`)."""
    refs = write_sample(arc, sample)
    return lambda i, batch: kept_row(i, refs, batch)


def commit_job(arc: Archive, lo: int, hi: int, job: str, batch_rows: int, make: MakeRow,
               compact_every: int = 0, written: list[int] | None = None, log: bool = False,
               tally: Counter[str] | None = None) -> int:
    """Commit rows lo..hi-1 in batches of `batch_rows`, compacting after every `compact_every`
    batches (0: never; as the migration driver does during a job), adding the bytes each
    compaction wrote to `written` and, to `tally`, the store requests of the commits
    (`commit`, `commit_lists`) and of the compactions (`compact`); returns the number of
    batches. `log`: a progress line per compaction (the 10M build takes about an hour)."""
    k, t0 = 0, time.perf_counter()
    tally = Counter() if tally is None else tally
    with counting(arc.loc) as seen:
        for k, start in enumerate(range(lo, hi, batch_rows)):
            batch = f"keep-{job}-{k:07d}"
            arc.commit(batch, [make(i, batch) for i in range(start, min(start + batch_rows, hi))])
            tally.update(commit=seen.total, commit_lists=seen.lists)
            if compact_every and (k + 1) % compact_every == 0:
                old = arc.catalog.refresh().manifest
                seen.reset()
                arc.compact()
                tally.update(compact=seen.total)
                if written is not None:
                    written.append(bytes_written(arc, old, arc.catalog.refresh().manifest)[0])
                if log:
                    print(f"#   {start + batch_rows - lo:,} rows, {time.perf_counter() - t0:.0f} s, "
                          f"{sum(written or [0]) / 2**20:.0f} MB written, "
                          f"{tally['commit'] / (k + 1):.2f} requests per batch", flush=True)
            seen.reset()
    return k + 1


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def lookup_times(arc: Archive, ids: list[str]) -> tuple[list[float], list[float], list[float], list[float]]:
    """(cold seconds per id: a fresh `Catalog` each, warm seconds: the same id again on it,
    CPU seconds of each cold lookup and of each warm one: on a loaded machine the wall time
    also waits for a core)."""
    cold, warm, cpu, warm_cpu = [], [], [], []
    for image_id_ in ids:
        cat = Catalog(arc.loc)
        t0, c0 = time.perf_counter(), time.process_time()
        cat.get_row(image_id_)
        cold.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        cat.get_row(image_id_)
        warm.append(time.perf_counter() - t0)
        warm_cpu.append(time.process_time() - c0)
    return cold, warm, cpu, warm_cpu


def open_handle_times(arc: Archive, ids: list[str]) -> tuple[list[float], list[float], list[int]]:
    """Lookups of other ids through one open `Catalog` whose block cache is empty (footers and
    index partitions cached as they come): wall seconds, CPU seconds, store requests."""
    cat = Catalog(arc.loc)
    cat.get_row(ids[0])  # opened: manifest, log and footers known
    wall, cpu, requests = [], [], []
    with counting(arc.loc) as seen:
        for image_id_ in ids[1:]:
            cat.runs._blocks = LRU(cat.runs.block_cache)  # a cold block cache
            seen.reset()
            t0, c0 = time.perf_counter(), time.process_time()
            cat.get_row(image_id_)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            requests.append(seen.total)
    return wall, cpu, requests


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


def bytes_written(arc: Archive, old: Manifest | None, new: Manifest) -> tuple[int, int]:
    """(bytes a compaction wrote: new runs, folded copies, manifest and hint; index bytes after it)."""
    fs = arc.loc.fs
    known = {r.key for r in old.runs} if old is not None else set()  # None: the first compaction
    wrote = sum(r.size for r in new.runs if r.key not in known)
    wrote += sum(fs.size(arc.catalog.folded_path(b)) for b in new.folded)
    wrote += 2 * fs.size(arc.catalog.manifests.path(new.generation))  # the generation and latest.json
    return wrote, sum(r.size for r in new.runs)


def lookup_figures(arc: Archive, n: int, args: argparse.Namespace, out: dict[str, float]) -> None:
    """Cold and warm lookups of random present ids and of absent ids: times and requests."""
    rng = random.Random(n)
    present = [image_id(rng.randrange(n)) for _ in range(args.lookups)]
    absent = [f"d{i % 997:03d}/absent{i:06d}.png" for i in range(args.lookups // 4)]  # inside the runs' id ranges
    cold, warm, cpu, warm_cpu = lookup_times(arc, present)
    out["cold_cpu_p50_ms"], out["cold_cpu_p99_ms"] = pct(cpu, 0.5) * 1e3, pct(cpu, 0.99) * 1e3
    out["warm_cpu_p50_ms"], out["warm_cpu_p99_ms"] = pct(warm_cpu, 0.5) * 1e3, pct(warm_cpu, 0.99) * 1e3
    wall, cpu, requests = open_handle_times(arc, present)
    out["open_p50_ms"], out["open_p99_ms"] = pct(wall, 0.5) * 1e3, pct(wall, 0.99) * 1e3
    out["open_cpu_p50_ms"], out["open_cpu_p99_ms"] = pct(cpu, 0.5) * 1e3, pct(cpu, 0.99) * 1e3
    out["requests_open"], out["requests_open_max"] = pct(requests, 0.5), max(requests)
    out["cold_p50_ms"], out["cold_p99_ms"] = pct(cold, 0.5) * 1e3, pct(cold, 0.99) * 1e3
    out["warm_p50_ms"], out["warm_p99_ms"] = pct(warm, 0.5) * 1e3, pct(warm, 0.99) * 1e3
    cold, _, _, _ = lookup_times(arc, absent)
    out["absent_p50_ms"], out["absent_p99_ms"] = pct(cold, 0.5) * 1e3, pct(cold, 0.99) * 1e3
    requests, lists, warm_requests = lookup_requests(arc, present[:40])
    out["requests_per_lookup"], out["requests_max"] = pct(requests, 0.5), max(requests)
    out["lists_per_lookup"], out["requests_warm"] = max(lists), max(warm_requests)
    requests, lists, _ = lookup_requests(arc, absent[:20])
    out["requests_per_absent"], out["lists_per_absent"] = max(requests), max(lists)


def build(url: str, n: int, args: argparse.Namespace, make: MakeRow) -> dict[str, float]:
    """Create the catalog of n rows at `url` as a job commits it, then the job's final
    compaction (child process): the build figures."""
    out: dict[str, float] = {}
    arc = Archive.create(url, MODEL)
    if args.shared_meta:
        make = shared_rows(arc, args.sample)
    written: list[int] = []
    tally: Counter[str] = Counter()
    t0 = time.perf_counter()
    out["batches"] = commit_job(arc, 0, n, "a", args.batch_rows, make, args.compact_every, written, log=n > 100_000,
                                tally=tally)
    out["commit_s"] = time.perf_counter() - t0
    out["requests_per_batch"], out["lists_per_batch"] = tally["commit"] / out["batches"], tally["commit_lists"] / out["batches"]
    out["requests_per_compaction"] = tally["compact"] / max(1, len(written))
    t0 = time.perf_counter()
    Catalog(arc.loc).get_row("absent/before-compaction.png")
    out["absent_uncompacted_s"] = time.perf_counter() - t0
    old = arc.catalog.manifests.discover()
    _, out["compact_job_s"], out["compact_job_rss_mb"], _ = child([sys.executable, __file__, "--compact-child", url])
    new = arc.catalog.manifests.discover()
    written.append(bytes_written(arc, old, new)[0])
    out["build_compactions"] = len(written) - 1
    out["build_written_mb"] = sum(written) / 2**20
    out["write_amplification"] = sum(written) / max(1, sum(r.size for r in new.runs))
    return out


def measure(url: str, n: int, args: argparse.Namespace, make: MakeRow) -> dict[str, float]:
    """Every read-side figure of the built catalog of n rows at `url`, then compaction of 64
    new rows on it (which adds them: a rerun commits another 64)."""
    arc = Archive.open(url, mode="a")
    runs = arc.catalog.manifests.discover().runs
    out: dict[str, float] = {"runs": len(runs), "index_mb": sum(r.size for r in runs) / 2**20,
                             "footers_kb": sum(r.footer_size for r in runs) / 1024}  # a fresh handle reads them
    lookup_figures(arc, n, args, out)
    if not args.no_ls:  # catalog_commands.py runs it with a time limit at 1M and 10M
        out["ls_first_s"], out["ls_total_s"], out["ls_rss_mb"], _ = child([sys.executable, "-m", "lbdask", "ls", url])
    if args.shared_meta:
        make = shared_rows(arc, args.sample)
    old = arc.catalog.manifests.discover()
    stamp = int(time.time()) % 1_000_000  # new ids and batch names on every rerun
    commit_job(arc, n + 64 * (1 + stamp), n + 64 * (2 + stamp), f"b{stamp}", 8, make)
    t0 = time.perf_counter()
    arc.compact()
    out["compact64_s"] = time.perf_counter() - t0
    wrote, _ = bytes_written(arc, old, arc.catalog.manifests.discover())
    out["compact64_written_kb"] = wrote / 1024
    return out


def run_sizes(prefix: str, sizes: list[int], args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Build (`--phase build`/`all`) and measure (`measure`/`all`) the catalog of each size
    under `prefix`; the build figures are kept beside a kept (`--keep`) archive."""
    results = {}
    for n in sizes:
        t0 = time.perf_counter()
        url, saved = f"{prefix}/n{n}", Path(args.keep or prefix).resolve() / f"n{n}.build.json"
        if args.phase in ("build", "all"):
            results[n] = build(url, n, args, corpus_rows(args.sample))
            if not url.startswith("s3://"):
                saved.write_text(json.dumps(results[n]))
        else:
            results[n] = json.loads(saved.read_text())
        if args.phase in ("measure", "all"):
            results[n].update(measure(url, n, args, corpus_rows(args.sample)))
        print(f"# {prefix} n={n}: {json.dumps(results[n])} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results


def upload(folder: Path, sizes: list[int], bucket: str) -> None:
    """Copy kept folder catalogs to the S3 server: the same objects."""
    import fsspec

    fs = fsspec.filesystem("s3")
    for n in sizes:
        fs.put(str(folder / f"n{n}"), f"{bucket}/n{n}", recursive=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    ap.add_argument("--s3", action="store_true", help="also on the local S3 server (moto)")
    ap.add_argument("--s3-sizes", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--big", action="store_true", help="allow sizes over 100,000 (1M: ~1 h, ~10 GB of disk)")
    ap.add_argument("--batch-rows", type=int, default=8, help="rows per committed batch (jobs.yaml batch_size: 8)")
    ap.add_argument("--compact-every", type=int, default=64, help="compact after every N batches (0: only at the end)")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="sizes 200 and 1000, 40 lookups (a smoke run)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--save-chunks", help="write the corpus chunk sample here (for catalog_engines.py)")
    ap.add_argument("--shared-meta", action="store_true",
                    help="rows reference the sample's chunks written once (catalog_build.py; for 1M and 10M)")
    ap.add_argument("--keep", help="build the folder catalogs under this folder and keep them")
    ap.add_argument("--phase", choices=["all", "build", "measure"], default="all",
                    help="build only, or measure catalogs built before under --keep")
    ap.add_argument("--no-ls", action="store_true", help="measure without `lbdask ls`")
    ap.add_argument("--s3-from", action="store_true", help="with --phase measure: upload the catalogs kept under --keep to the S3 server")
    ap.add_argument("--compact-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compact_child:
        print(json.dumps(Archive.open(args.compact_child, mode="a").compact()))
        return
    if args.quick:
        args.sizes, args.s3_sizes, args.lookups = [200, 1_000], [200, 1_000], 40
    if max(args.sizes + (args.s3_sizes if args.s3 else [])) > 100_000 and not args.big:
        ap.error("sizes over 100,000 need --big")
    args.sample = sample = corpus_sample(CORPUS)
    if args.save_chunks:
        save_chunks(args.save_chunks, sample)
    if args.phase != "all" and not args.keep:
        ap.error("--phase build / measure need --keep")
    sizes = sorted(sum((len(d) for _, d in c), 0) for c in sample)
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; corpus chunk bytes per image: "
          f"median {sizes[len(sizes) // 2]:,}, max {sizes[-1]:,} ({len(sample)} images)", flush=True)
    all_results = {}
    if args.keep and args.sizes:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        all_results["folder"] = run_sizes(str(Path(args.keep).resolve()), sorted(args.sizes), args)
    elif args.sizes:
        with tempfile.TemporaryDirectory(prefix="catalog-scale-") as root:
            all_results["folder"] = run_sizes(root, sorted(args.sizes), args)
    if args.s3:
        with S3Server() as bucket:
            if args.s3_from:
                upload(Path(args.keep).resolve(), sorted(args.s3_sizes), f"s3://{bucket}")
            all_results["s3"] = run_sizes(f"s3://{bucket}", sorted(args.s3_sizes), args)
    for where, results in all_results.items():
        print(table(results, f"catalog on {where} (batches of {args.batch_rows} rows; growth vs the smallest size)"))
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main()
