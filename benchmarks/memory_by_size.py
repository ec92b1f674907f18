"""Peak memory of `lbdask migrate` and `lbdask read` by image size (all the job's processes).

    python benchmarks/memory_by_size.py [--mp 1 4 16 64] [--args --backend torch ...]

For each size one PNG of that many megapixels (a corpus image resized, so the content
is real) is migrated into a fresh archive with the default command (local cluster:
scheduler, nanny and worker processes), then read back. The resident set of the command
and every process under it is sampled every 0.1 s; the table gives the peak of their sum,
wall time and the image's outcome. `max_pixels` is raised to fit the largest size.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "ai-png"
TAEF2 = REPO.parent / "shared" / "models" / "taef2"


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of `proc` and all its descendants (processes that vanish count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_tracked(cmd: list[str], env: dict[str, str] | None = None, stdout=subprocess.DEVNULL) -> tuple[float, int, int]:
    """Run `cmd`; (wall seconds, peak summed RSS of its process tree in bytes, exit status)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - t0, peak, proc.returncode


def make_png(mp: float, path: Path) -> tuple[int, int]:
    """A `mp`-megapixel RGB PNG resized from a corpus photo (3:2)."""
    src = Image.open(sorted(CORPUS.glob("*.png"))[0]).convert("RGB")
    w = int((mp * 1e6 * 1.5) ** 0.5)
    h = int(mp * 1e6 / w)
    src.resize((w, h), Image.BICUBIC).save(path, compress_level=1)
    return w, h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", type=float, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[], help="extra `lbdask migrate/read` options")
    args = parser.parse_args()
    lbdask = [sys.executable, "-m", "lbdask"]
    print(f"# lbdask peak memory by image size - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average {os.getloadavg()[0]:.1f}, "
          f"{datetime.date.today().isoformat()}, options {' '.join(args.args) or '(defaults)'}\n")
    print("| image | pixels | outcome | migrate peak RSS, all processes (GiB) | migrate s | read peak RSS (GiB) | read s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.mp:
            src, dest = Path(tmp) / f"src{mp}", Path(tmp) / f"dest{mp}"
            src.mkdir()
            w, h = make_png(mp, src / "image.png")
            max_pixels = str(max(w * h, 16_777_216))
            common = ["--weights", str(TAEF2), *args.args]
            secs, peak, rc = run_tracked([*lbdask, "migrate", str(src), str(dest), "--no-progress", "--workers", "1",
                                          "--max-pixels", max_pixels, *common])
            outcome = "error" if rc else "?"
            rsecs = rpeak = float("nan")
            if (dest / "catalog").exists() or not rc:  # a loaded machine can time out closing the cluster after the commit
                sys.path.insert(0, str(REPO))
                from lbdask.archive import Archive

                row = Archive.open(str(dest), mode="r").get_row("image.png")
                if row is None:
                    print(f"| {w}x{h} | {w * h / 1e6:.1f} MP | not committed (exit {rc}) | {peak / 2**30:.2f} | {secs:.0f} | - | - |")
                    continue
                outcome = row.status if row.status == "latent" else f"{row.status} ({row.reason})"
                rsecs, rpeak, _ = run_tracked([*lbdask, "read", str(dest), "image.png", "-o", str(Path(tmp) / "out.png"),
                                               *[a for a in common if a not in ("--workers",)]])
            print(f"| {w}x{h} | {w * h / 1e6:.1f} MP | {outcome} | {peak / 2**30:.2f} | {secs:.0f} | "
                  f"{rpeak / 2**30:.2f} | {rsecs:.0f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; {json.dumps(args.mp)} MP")


if __name__ == "__main__":
    main()
