"""End to end at scale (issue 25): `lbdask migrate` of N small kept PNGs, and the commands after it.

    python benchmarks/migrate_e2e_scale.py [--images 10000] [--keep DIR [--reuse]] [--json OUT]

Writes N 64 x 64 RGB PNGs, each carrying the ancillary chunks of one of the shared corpus's
AI PNGs drawn at random (prompts and workflows: median ~6.9 KB, catalog_rows.py), and runs
the real CLI as a user would, each command a child process (peak RSS from its VmHWM):
- `lbdask migrate SRC DEST --min-side 65` (every image is kept: the catalog dominates) on
  the embedded local cluster: wall time, driver RSS;
- the same command again (a no-op rerun): wall time, driver RSS;
- `lbdask ls DEST` (read to the end, as piped to `wc -l`): first row, total, RSS, rows;
- `lbdask verify DEST --all --sample 0` and `lbdask repair DEST` (dry run): time, RSS.
Prints a markdown table with machine, date and the job's batch size and catalog compaction
interval (configs/jobs.yaml). `--reuse` measures again the commands after the migration on
the source and archive an earlier run left in `--keep DIR` (the first migration not rerun).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from catalog_scale import CORPUS, corpus_sample
from proc_stats import ChildRun, child
from sim_speed import cpu_model  # benchmarks/ is on the path when a script here runs

from lbdask.image import pngio
from lbdask.representation.settings import load_job_settings

TAEF2 = CORPUS.parent.parent / "models" / "taef2"


def write_source(folder: Path, n: int, seed: int = 0) -> int:
    """`n` grainy 64 x 64 PNGs with a random corpus image's chunks, 1000 per subfolder; their bytes."""
    sample = corpus_sample(CORPUS)
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    base = np.linspace(0, 200, 64)[None, :, None] + np.linspace(0, 50, 64)[:, None, None]
    total = 0
    for i in range(n):
        sub = folder / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        rgb = np.clip(base + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)
        data = pngio.encode(rgb, None, pick.choice(sample) if sample else ())
        (sub / f"img{i:07d}.png").write_bytes(data)
        total += len(data)
    return total


def lbdask(*args: str, first_line: int = 2) -> ChildRun:
    return child([sys.executable, "-m", "lbdask", *args], first_line)


def run(n: int, work: Path, reuse: bool = False) -> dict[str, ChildRun | float]:
    """Every figure; with `reuse`, of the commands after the migration of an earlier run in `work`."""
    src, dest = work / "src", str(work / "archive")
    t0 = time.perf_counter()
    size = sum(f.stat().st_size for f in src.rglob("*.png")) if reuse else write_source(src, n)
    out: dict[str, ChildRun | float] = {"source_mb": size / 2**20, "generate_s": time.perf_counter() - t0}
    migrate = ["migrate", str(src), dest, "--min-side", "65", "--no-progress", "--weights", str(TAEF2)]
    if not reuse:
        out["migrate"] = lbdask(*migrate)
    out["rerun"] = lbdask(*migrate)
    out["ls"] = lbdask("ls", dest)
    out["verify"] = lbdask("verify", dest, "--all", "--sample", "0", "--weights", str(TAEF2))
    out["repair"] = lbdask("repair", dest)
    return out


def table(n: int, out: dict) -> str:
    rows = [("`lbdask migrate` (kept path, embedded local cluster)", out.get("migrate")),
            ("no-op rerun of the same `migrate`", out["rerun"]),
            ("`lbdask ls` read to the end (as `wc -l` does)", out["ls"]),
            ("`lbdask verify --all --sample 0`", out["verify"]),
            ("`lbdask repair` (dry run)", out["repair"])]
    lines = [f"| command ({n:,} images) | wall s | peak RSS MB | note |", "|---|---:|---:|---|"]
    for label, r in rows:
        if r is None:
            continue
        note = f"first row {r.first_s:.2f} s, {r.lines - 1:,} rows" if r is out["ls"] else ""
        lines.append(f"| {label} | {r.total_s:.1f} | {r.rss_mb:.0f} | {note} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    ap.add_argument("--reuse", action="store_true", help="the source and archive in --keep DIR are there: "
                                                         "measure the commands after the migration again")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.reuse and not args.keep:
        ap.error("--reuse needs --keep DIR")
    job = load_job_settings()
    work = Path(args.keep or tempfile.mkdtemp(prefix="lbdask-e2e-"))
    started, load = datetime.datetime.now(datetime.UTC), os.getloadavg()[0]
    try:
        out = run(args.images, work, args.reuse)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"# {started:%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, load {load:.1f} -> {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}; {args.images:,} PNGs of 64x64, {out['source_mb']:.0f} MB "
          f"(written in {out['generate_s']:.0f} s); batch_size {job.batch_size}, "
          f"compact_every_batches {job.compact_every_batches}\n")
    print(table(args.images, out))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v._asdict() if isinstance(v, ChildRun) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
