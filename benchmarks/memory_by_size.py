"""Peak memory of `lbdask migrate` and `lbdask read` by image size (all the job's processes).

    python benchmarks/memory_by_size.py [--mp 1 4 16 64] [--count N] [--no-read] [--timeout S] [--args --runtime torch ...]

For each size a folder of `--count` PNGs (default 1) of that many megapixels is migrated
into a fresh archive with the default command (default local cluster: scheduler, nanny and
worker processes), then the first is read back. The image is a real AI image of the shared
corpus (`SOURCE`, 1920 x 1088) upscaled with Lanczos to the size, plus mild Gaussian noise
(sigma 2 levels) so it is not unnaturally smooth; each image of a folder has its own noise,
so none is a duplicate. The resident set (RSS) and proportional set (PSS: shared pages split
between the processes, so shared libraries count once) of the command and every process
under it are sampled every `--interval` s; the table gives the peak of their sums, wall
time, the images' outcomes and their mean PSNR. `--max-pixels` is passed only to sizes above the
default `max_pixels` (16 MiP), raised to fit. The first (smallest) size is the baseline the
others are compared with. `--timeout` stops a run and reports its partial peak.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "ai-png"
SOURCE = CORPUS / "area_composition_square_area_for_subject.png"
TAEF2 = REPO.parent / "shared" / "models" / "taef2"
DEFAULT_MAX_PIXELS = 16_777_216
GIB = 2**30


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, PSS) bytes summed over `proc` and its descendants (processes that vanish count 0)."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def run_tracked(cmd: list[str], interval: float = 0.5, timeout: float | None = None,
                label: str = "") -> tuple[float, int, int, int | None]:
    """Run `cmd`; (wall seconds, peak summed RSS and PSS of its process tree, exit status or None if stopped).

    The running peak goes to stderr every minute, so a run stopped early still says how far it got.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak_rss, peak_pss, last_note = psutil.Process(proc.pid), 0, 0, t0
    while proc.poll() is None:
        rss, pss = tree_memory(ps)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        now = time.perf_counter()
        if now - last_note >= 60:
            last_note = now
            print(f"# {label} {now - t0:.0f} s: now RSS {rss / GIB:.2f} / PSS {pss / GIB:.2f} GiB, "
                  f"peak RSS {peak_rss / GIB:.2f} / PSS {peak_pss / GIB:.2f} GiB", file=sys.stderr, flush=True)
        if timeout and now - t0 > timeout:
            for p in [*ps.children(recursive=True), ps]:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            proc.wait()
            return now - t0, peak_rss, peak_pss, None
        time.sleep(interval)
    err = proc.stderr.read()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - t0, peak_rss, peak_pss, proc.returncode


def make_png(mp: float, path: Path, seed: int = 0) -> tuple[int, int]:
    """A `mp`-megapixel RGB PNG: `SOURCE` upscaled with Lanczos plus Gaussian noise (sigma 2, from `seed`), row band by band."""
    src = Image.open(SOURCE).convert("RGB")
    aspect = src.width / src.height
    w = int((mp * 1e6 * aspect) ** 0.5)
    h = int(mp * 1e6 / w)
    pixels = np.asarray(src.resize((w, h), Image.LANCZOS))
    rng = np.random.default_rng(seed)
    noisy = np.empty_like(pixels)
    for y in range(0, h, 512):
        band = pixels[y:y + 512].astype(np.float32) + rng.normal(0, 2, pixels[y:y + 512].shape).astype(np.float32)
        noisy[y:y + 512] = np.clip(np.rint(band), 0, 255)
    Image.fromarray(noisy).save(path, compress_level=1)
    return w, h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", type=float, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--count", type=int, default=1, help="images of each size in the folder")
    parser.add_argument("--no-read", action="store_true", help="migrate only")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--timeout", type=float, default=None, help="stop a migration after S seconds (partial peak)")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[], help="extra `lbdask migrate/read` options")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from lbdask.archive import Archive

    lbdask = [sys.executable, "-m", "lbdask"]
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# lbdask peak memory by image size - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / GIB:.0f} GiB, load average {os.getloadavg()[0]:.1f}, "
          f"{started:%Y-%m-%d %H:%M} UTC, {args.count} x image {SOURCE.name} upscaled per folder, options {' '.join(args.args) or '(defaults)'}\n")
    print("| image | pixels | max_pixels | outcome | PSNR (dB) | migrate peak RSS, all processes (GiB) | peak PSS (GiB) "
          "| PSS vs baseline | migrate s | read peak RSS (GiB) | read s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.mp:
            src, dest = Path(tmp) / f"src{mp}", Path(tmp) / f"dest{mp}"
            src.mkdir()
            names = [f"image{k}.png" if k else "image.png" for k in range(args.count)]
            for k, name in enumerate(names):
                w, h = make_png(mp, src / name, seed=k)
            raise_to = [] if w * h <= DEFAULT_MAX_PIXELS else ["--max-pixels", str(w * h)]
            common = ["--weights", str(TAEF2), *args.args]
            secs, peak, pss, rc = run_tracked([*lbdask, "migrate", str(src), str(dest), "--no-progress", *raise_to, *common],
                                              args.interval, args.timeout, f"{mp} MP migrate")
            baseline = baseline or pss
            outcome, psnr, rsecs, rpeak = "error", "-", float("nan"), float("nan")
            arc = Archive.open(str(dest), mode="r") if (dest / "catalog").exists() else None
            rows = [r for r in (arc.get_row(n) for n in names) if r is not None] if arc else []
            if rc is None:
                outcome = f"stopped after {secs:.0f} s (partial peak), {len(rows)} of {len(names)} committed"
            elif not rows:
                outcome = f"not committed (exit {rc})"
            elif len(names) > 1:
                outcome = ", ".join(f"{n} {status}" for status, n in sorted(Counter(r.status for r in rows).items()))
            else:
                outcome = rows[0].status if rows[0].status == "latent" else f"{rows[0].status} ({rows[0].reason})"
            outcome += "" if rc in (0, None) or not rows else f", exit {rc}"
            scores = [r.psnr for r in rows if r.psnr is not None]
            psnr = f"{sum(scores) / len(scores):.2f}" if scores else "-"
            if rc is not None and rows and not args.no_read:
                rsecs, rpeak, _, _ = run_tracked([*lbdask, "read", str(dest), rows[0].id, "-o", str(Path(tmp) / "out.png"),
                                                  *common], args.interval, args.timeout, f"{mp} MP read")
            print(f"| {len(names)} x {w}x{h} | {len(names)} x {w * h / 1e6:.1f} MP | {raise_to[1] if raise_to else 'default'} "
                  f"| {outcome} | {psnr} | "
                  f"{peak / GIB:.2f} | {pss / GIB:.2f} | {pss / baseline:.2f}x | {secs:.0f} | "
                  f"{rpeak / GIB:.2f} | {rsecs:.0f} |", flush=True)
            shutil.rmtree(src)
    print(f"\nload average {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end, "
          f"{datetime.datetime.now(datetime.timezone.utc):%H:%M} UTC; sizes {json.dumps(args.mp)} MP")


if __name__ == "__main__":
    main()
