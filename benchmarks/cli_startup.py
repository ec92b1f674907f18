"""Start-up time and peak memory of the light CLI commands (issue 18: target <= 0.5 s).

Builds a small archive through the Archive API (kept images only: no model needed), then
runs each command N times in a fresh interpreter and prints the median wall time, CPU
time (user + system: less sensitive than wall time to other jobs on the machine) and peak RSS, next to two baselines measured in the same run: a bare interpreter and
`import torch` (what `ls` and a kept read used to pay). With `--before DIR` (an export of
an older commit, e.g. `git archive cfa0dd8 | tar -x -C DIR`) the same commands also run
with that tree's `lbdask` first on PYTHONPATH.

    python benchmarks/cli_startup.py [--repeat 7] [--before DIR]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

# Peak RSS from VmHWM (this process image only): ru_maxrss would keep the benchmark's own
# RSS, which the child inherits at fork, and show the same figure for every command.
RUN = """
import resource, sys
{body}
r = resource.getrusage(resource.RUSAGE_SELF)
try:
    kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except OSError:
    kb = r.ru_maxrss
print(kb, r.ru_utime + r.ru_stime, file=sys.stderr)
"""
CLI = "from lbdask.cli import main\ncode = main(sys.argv[1:])\nassert code == 0, code"


def build(dest: str, images: int = 200) -> None:
    from lbdask.archive import Archive, CatalogRow

    arc = Archive.create(dest, {"name": "bench", "fingerprint": "0" * 64, "latent_channels": 32, "downsample": 8})
    rng = np.random.default_rng(0)
    originals = {}
    for i in range(images):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), np.uint8)).save(buf, format="PNG")  # ~10 KB
        originals[f"img{i:04d}.png"] = buf.getvalue()
    refs = arc.put_originals("b0", originals)
    arc.commit("b0", [CatalogRow(id=k, status="kept", reason="bench", source_size=len(v),
                                 source_sha256=hashlib.sha256(v).hexdigest(), width=48, height=48, mode="RGB",
                                 stored_bytes=len(v), original=refs[k], batch_id="b0")
                      for k, v in originals.items()])


def measure(body: str, argv: list[str], repeat: int, tree: str | None = None) -> tuple[float, float, float]:
    """Median wall seconds, CPU seconds and peak RSS (MB) of `body` in a fresh interpreter
    (`tree` first on the path: its `src/` in the src layout, else the tree itself)."""
    if tree and os.path.isdir(os.path.join(tree, "src", "lbdask")):
        tree = os.path.join(tree, "src")
    env = {**os.environ, "PYTHONPATH": tree} if tree else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    times, cpu, rss = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RUN.format(body=body), *argv], capture_output=True, text=True,
                              env=env, cwd=tempfile.gettempdir())  # not the checkout: `-c` puts the CWD first
        times.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"{argv}: {proc.stderr[-2000:]}")
        kb, seconds = proc.stderr.strip().splitlines()[-1].split()
        rss.append(int(kb) / 1024)
        cpu.append(float(seconds))
    return statistics.median(times), statistics.median(cpu), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--before", metavar="DIR", help="an older source tree to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "arc")
        build(dest)
        out = os.path.join(tmp, "out.png")
        cases = [
            ("baseline: python -c pass", "pass", []),
            ("baseline: import torch", "import torch", []),
            ("lbdask --help", "from lbdask.cli import build_parser\nbuild_parser().format_help()", []),
            ("lbdask ls DEST (200 rows)", CLI, ["ls", dest]),
            ("lbdask report DEST", CLI, ["report", dest]),
            ("lbdask read DEST ID (10 KB kept PNG)", CLI, ["read", dest, "img0007.png", "-o", out]),
        ]
        print(f"{dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"median of {args.repeat}; the machine was shared with other jobs")
        before = " before: wall s | CPU s | RSS MB |" if args.before else ""
        print(f"| command | wall s | CPU s | peak RSS MB |{before}\n|---|---:|---:|---:|"
              f"{'---:|---:|---:|' if args.before else ''}")
        for label, body, argv in cases:
            row = "| {} | {:.2f} | {:.2f} | {:.0f} |".format(label, *measure(body, argv, args.repeat))
            if args.before and argv:
                row += " {:.2f} | {:.2f} | {:.0f} |".format(*measure(body, argv, args.repeat, args.before))
            elif args.before:
                row += " | | |"
            print(row)


if __name__ == "__main__":
    main()
