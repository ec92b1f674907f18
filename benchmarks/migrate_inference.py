"""End-to-end `lbdask migrate` with the default inference against fp32 torch, in one run.

    python benchmarks/migrate_inference.py [--limit N] [--crop PX] [--corpus DIR] [--rounds R]

Migrates the same source into fresh archives - `--precision fp32 --runtime torch` (the
baseline, the path before issue 11) and the defaults (auto) - alternating, `--rounds`
times each, then compares: median wall time (whole `lbdask migrate` command: cluster
start, model load, PNG decode, encode, measuring decode, PSNR, pcodec, shard writes),
per-image throughput, peak memory of all the job's processes, which images were kept or
failed (must not change) and the PSNR each latent image got (mean and worst cost of the
default against fp32). `--limit` / `--crop` take a subset or centre crops of the corpus
when the machine is too busy for the whole of it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from memory_by_size import CORPUS, TAEF2, run_tracked
from PIL import Image

from lbdask.archive import Archive
from lbdask.archive.history import read_job_records


def make_source(corpus: Path, out: Path, limit: int | None, crop: int | None) -> int:
    """Copy (or centre-crop) the corpus PNGs into `out`; the number of files."""
    files = sorted(corpus.glob("*.png"))[:limit]
    for f in files:
        if crop:
            im = Image.open(f)
            w, h = im.size
            left, top = max(0, (w - crop) // 2), max(0, (h - crop) // 2)
            im.crop((left, top, min(w, left + crop), min(h, top + crop))).save(out / f.name)
        else:
            (out / f.name).write_bytes(f.read_bytes())
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    load0 = os.getloadavg()
    lbdask = [sys.executable, "-m", "lbdask", "migrate"]
    runs = {"fp32 torch (baseline)": ["--precision", "fp32", "--runtime", "torch"], "default (auto)": []}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    phases: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        n = make_source(args.corpus, src, args.limit, args.crop)
        pixels = sum(Image.open(f).size[0] * Image.open(f).size[1] for f in src.glob("*.png"))
        for r in range(args.rounds):
            for name, options in runs.items():
                dest = Path(tmp) / f"{name.split()[0]}-{r}"
                secs, peak, rc = run_tracked([*lbdask, str(src), str(dest), "--no-progress", "--workers", "1",
                                              "--weights", str(TAEF2), *options])
                rows = {row.id: row for row in Archive.open(str(dest), mode="r").rows()} if dest.exists() else {}
                if rc and len(rows) < n:  # (a loaded machine can time out closing the cluster after the last commit)
                    raise SystemExit(f"{name}: lbdask migrate exited {rc}")
                walls[name].append(secs)
                job = read_job_records(Archive.open(str(dest), mode="r"))[-1]
                phases[name].append((job["phase_seconds"].get("start", 0.0), job["phase_seconds"].get("batches", 0.0),
                                     job.get("encode_seconds", 0.0)))
                print(f"# round {r + 1} {name}: {secs:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
                results[name] = (statistics.median(walls[name]), max(peak, results.get(name, (0, 0))[1]), rows)
    (base_s, base_peak, base_rows), (s, peak, rows) = results.values()
    device = {r.device_class for r in rows.values() if r.device_class} or {"-"}
    print(f"# lbdask migrate, default vs fp32 torch - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load0)} at start, "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"{n} images, {pixels / 1e6:.1f} MP{f', {args.crop} px centre crops' if args.crop else ''}; "
          f"default ran as {', '.join(sorted(device))}; {args.rounds} round(s), alternating\n")
    batch_s = {name: statistics.median(p[1] for p in phases[name]) for name in runs}
    base_batch = next(iter(batch_s.values()))
    print("| run | wall s (median) | all rounds (s) | speed-up (wall) | start-up s | batches s (median) | all rounds (s) "
          "| batches MP/s | speed-up (batches) | model calls s | peak RSS all processes (GiB) "
          "| latent | kept | failed | mean PSNR (dB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (secs, pk, rws) in results.items():
        st = [r.status for r in rws.values()]
        ps = [r.psnr for r in rws.values() if r.status == "latent"]
        ph = phases[name]
        print(f"| {name} | {secs:.0f} | {', '.join(f'{w:.0f}' for w in walls[name])} | {base_s / secs:.2f}x | "
              f"{statistics.median(p[0] for p in ph):.0f} | {batch_s[name]:.0f} | {', '.join(f'{p[1]:.0f}' for p in ph)} | "
              f"{pixels / 1e6 / batch_s[name]:.3f} | {base_batch / batch_s[name]:.2f}x | "
              f"{statistics.median(p[2] for p in ph):.0f} | {pk / 2**30:.2f} | {st.count('latent')} | "
              f"{st.count('kept')} | {st.count('failed')} | {np.mean(ps) if ps else float('nan'):.3f} |")
    changed = sorted(i for i in base_rows if (base_rows[i].status, base_rows[i].reason) != (rows[i].status, rows[i].reason))
    both = [i for i in base_rows if base_rows[i].psnr is not None and rows[i].psnr is not None]
    cost = np.array([base_rows[i].psnr - rows[i].psnr for i in both])
    print(f"\noutcome changed for {len(changed)} image(s){': ' + ', '.join(changed) if changed else ''}; "
          f"PSNR cost of the default vs fp32 over {len(both)} measured images: mean {cost.mean():.4f} dB, "
          f"max {cost.max():.4f} dB")


if __name__ == "__main__":
    main()
