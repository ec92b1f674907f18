"""Peak memory of `lbdask repair --apply` and `lbdask upgrade` against the catalog's size (issue 25).

Builds a version 1 archive (hash-partitioned index, folded copies: what the two commands read
whole) of N rows on a folder, then runs each command in a child process and reports its wall
time, CPU time and peak RSS (VmHWM of the child). `repair --apply` runs after the manifest is
deleted, so it rebuilds the whole index; `upgrade` converts the archive to sorted runs.
Peak RSS is the child's own VmHWM: its `ru_maxrss` would count the pages of this process,
which holds every row it built (a child inherits its parent's high-water mark across
fork and exec: what made `repair --apply` look as if it grew ~1.75 MB per 1,000 rows).
`--src` picks the lbdask source tree the commands run (compare a checkout of main with this one).

    python benchmarks/repair_memory.py --rows 100000 --src /work/main/src --src src
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.creation import set_format_version
from lbdask.storage import open_location
from tests.support.v1_catalog import write_v1_catalog

MODEL = {"name": "tiny", "fingerprint": "f" * 64, "latent_channels": 4, "downsample": 8, "config": {}}
BATCH_ROWS = 64


def build(dest: str, rows: int, partitions: int) -> None:
    """A version 1 archive of `rows` failed-input rows (no data objects to check), folded in
    batches of BATCH_ROWS, ids shaped like a photo tree's."""
    Archive.create(dest, MODEL, shard_size=64)
    loc = open_location(dest)
    set_format_version(loc, 1)
    folded = {f"job-{b:07d}": [CatalogRow(id=f"photos/d{(b * BATCH_ROWS + j) // 1000:05d}/img{b * BATCH_ROWS + j:09d}.png",
                                          status="failed", reason="not a PNG", source_size=123_456,
                                          source_sha256="ab" * 32, source_stamp="mtime:1700000000000000000")
                          for j in range(min(BATCH_ROWS, rows - b * BATCH_ROWS))]
              for b in range((rows + BATCH_ROWS - 1) // BATCH_ROWS)}
    write_v1_catalog(loc, folded, partitions=partitions)


#: Runs `lbdask ARGS` in the child and reports its own peak RSS (VmHWM, kB) and CPU seconds last.
CHILD = ("import resource, sys\nfrom lbdask.cli import main\ncode = main(sys.argv[1:])\n"
         "hwm = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
         "r = resource.getrusage(resource.RUSAGE_SELF)\n"
         "print('maxrss', hwm, r.ru_utime + r.ru_stime, file=sys.stderr)\nsys.exit(code)")


def measure(src: str, *args: str) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MB) and the last output line of `lbdask ARGS` run from `src`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.abspath(src), str(Path(__file__).resolve().parents[1])])}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak, cpu = next((line.split()[1:] for line in out.stderr.splitlines() if line.startswith("maxrss ")), (0, 0))
    lines = out.stdout.strip().splitlines() or out.stderr.strip().splitlines()
    return wall, float(cpu), int(peak) / 1024, lines[-1] if lines else f"exit {out.returncode}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--partitions", type=int, default=256)
    ap.add_argument("--src", nargs="+", default=["src"], help="lbdask source trees to run the commands from")
    ap.add_argument("--work", default=None, help="folder for the archives (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="repair-memory-"))
    print("| rows | command | source | wall s | CPU s | peak RSS MB | output |")
    print("|---|---|---|---|---|---|---|")
    for rows in args.rows:
        for command in ("repair", "upgrade"):
            dest = str(work / f"{command}-{rows}")
            shutil.rmtree(dest, ignore_errors=True)
            build(dest, rows, args.partitions)
            if command == "repair":
                shutil.rmtree(os.path.join(dest, "catalog", "manifests"))
                cli = ("repair", dest, "--apply")
            else:
                cli = ("upgrade", dest)
            for src in args.src:
                if src != args.src[0]:
                    shutil.rmtree(dest, ignore_errors=True)
                    build(dest, rows, args.partitions)
                    if command == "repair":
                        shutil.rmtree(os.path.join(dest, "catalog", "manifests"))
                wall, cpu, peak, last = measure(src, *cli)
                print(f"| {rows:,} | `{' '.join(cli[:1] + cli[2:])}` | {src} | {wall:.1f} | {cpu:.1f} | {peak:.0f} | {last[:60]} |",
                      flush=True)
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
