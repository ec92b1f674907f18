"""The streaming commands and `lbdask read` on a built catalog (issue 25, 1M / 10M rows).

Each command runs as a child process, as a user runs it: wall time, time to its first output
line, output lines, and its peak RSS (VmHWM) with a timeline of VmRSS, so a command stopped at
`--timeout` (a 10M `ls` on a loaded machine) still tells whether its memory stays flat. The
commands: `ls` (read to the end), `report`, `stats`, `verify --all --sample 100`, `repair`
(dry run), `retier` (planning; no --apply), the migrate rerun check (`pending_work`, called
directly on a synthesised stream of the N ids' listing entries, in id order or through the
external sort: no 10M-file source folder), and `lbdask read` of kept ids committed here with real PNG bytes (`--read`).

Usage: python benchmarks/catalog_commands.py DEST N [--timeout 900] [--only ls report ...]
       [--read 5] [--json OUT]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from catalog_rows import image_id

TAEF2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "taef2"
COMMANDS = {  # verify names a real model: the benchmark archives record a placeholder (no latents to decode)
    "ls": ["ls"], "report": ["report"], "stats": ["stats"],
    "verify": ["verify", "--all", "--sample", "100", "--model", "taef2", "--weights", str(TAEF2)],
    "repair": ["repair"], "retier": ["retier", "--no-progress"],
}


def _status(pid: int) -> dict[str, float]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) / 1024 for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run `args`, counting stdout lines; stop it (this child only) after `timeout` seconds.
    Its CPU seconds too: on a loaded machine its wall time mostly waits for a core."""
    t0, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out: dict[str, Any] = {"lines": 0, "first_s": None, "rss_timeline": []}

    def read() -> None:
        for _ in proc.stdout:
            out["lines"] += 1
            if out["first_s"] is None and out["lines"] == 2:  # `ls` writes a header first
                out["first_s"] = time.perf_counter() - t0

    reader = threading.Thread(target=read)
    reader.start()
    peak, last = 0.0, -10.0
    while proc.poll() is None:
        now = time.perf_counter() - t0
        vm = _status(proc.pid)
        peak = max(peak, vm.get("VmHWM", 0.0))
        if now - last >= 10:
            out["rss_timeline"].append([round(now), round(vm.get("VmRSS", 0.0)), out["lines"]])
            last = now
        if now > timeout:
            proc.kill()
            out["timed_out"] = True
        time.sleep(0.05)
    reader.join()
    now = resource.getrusage(resource.RUSAGE_CHILDREN)  # this child's CPU: wall time waits for a core here
    out.update(total_s=time.perf_counter() - t0, rss_mb=peak,
               cpu_s=now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime, rc=proc.returncode,
               stderr_tail=proc.stderr.read().decode(errors="replace")[-300:])
    return out


def rerun_child(url: str, n: int, spill: bool) -> None:
    """The migrate rerun check on N listed sources that are all committed (peak RSS read by
    the parent); prints the check's time and whether it found work. The listing streams in id
    order, as `iter_source_ids` lists S3; with `spill`, in creation order through the external
    sort, as it lists a folder."""
    import tempfile

    from lbdask.archive import Archive
    from lbdask.archive.spill import SortedRows
    from lbdask.migrate.job import pending_work

    with tempfile.TemporaryDirectory(prefix="bench-listing-") as folder:
        listing = SortedRows(folder, listed(range(n))) if spill else listed(i for f in range(997) for i in range(f, n, 997))
        t0 = time.perf_counter()
        pending = pending_work(Archive.open(url), listing, False, lambda m: None)
    print(json.dumps({"check_s": time.perf_counter() - t0, "has_work": pending.has_work, "todo": len(pending.todo),
                      "changed": len(pending.changed), "listed": pending.listed}))


def listed(numbers: Iterable[int]) -> Iterator[Any]:
    """The listing entries of row numbers (sizes and stamps as `catalog_build.kept_row` records
    them); a line on stdout every 100,000 entries (the parent's timeline counts them)."""
    from lbdask.representation.listing import ListedSource

    for k, i in enumerate(numbers, 1):
        yield ListedSource(image_id(i), _size(i), f"mtime:{1_700_000_000_000_000_000 + i}")
        if k % 100_000 == 0:
            print(k, flush=True)


def _size(i: int) -> int:
    """The source size `catalog_build.kept_row` records for row i."""
    rng = random.Random(i)
    rng.randrange(34)  # the sample drawn first
    return rng.randrange(2_000, 40_000)


def add_read_rows(url: str, count: int) -> list[str]:
    """Commit `count` kept rows with real PNG bytes (stored copies in `originals/`), fold them."""
    from PIL import Image

    from lbdask.archive import Archive, CatalogRow

    arc = Archive.open(url, mode="a")
    batch, pngs = f"read-{int(time.time())}", {}
    for j in range(count):
        buf = io.BytesIO()
        Image.new("RGB", (48, 40), (j * 40 % 256, 90, 200)).save(buf, format="PNG")
        pngs[f"read/{batch}/k{j}.png"] = buf.getvalue()
    refs = arc.put_originals(batch, pngs)
    arc.commit(batch, [CatalogRow(id=i, status="kept", reason="min-side", source_size=len(d), width=48, height=40,
                                  source_sha256=hashlib.sha256(d).hexdigest(), stored_bytes=len(d), original=refs[i],
                                  kept_format="png", mode="RGB") for i, d in pngs.items()])
    arc.compact()
    return list(pngs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("n", type=int)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--only", nargs="*", default=[*COMMANDS, "rerun"],
                    help="commands; also rerun (the listing in id order) and rerun-spill (in creation order)")
    ap.add_argument("--read", type=int, default=0, help="commit this many kept ids and time `lbdask read` of each")
    ap.add_argument("--json")
    ap.add_argument("--rerun-child", choices=["rerun", "rerun-spill"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rerun_child:
        return rerun_child(args.dest, args.n, args.rerun_child == "rerun-spill")
    results: dict[str, Any] = {}
    for name in args.only:
        cmd = ([sys.executable, __file__, args.dest, str(args.n), "--rerun-child", name] if name.startswith("rerun")
               else [sys.executable, "-m", "lbdask", *COMMANDS[name], args.dest])
        results[name] = run_child(cmd, args.timeout)
        print(f"# {name}: {json.dumps(results[name])}", flush=True)
    if args.read:
        for j, image in enumerate(add_read_rows(args.dest, args.read)):
            results[f"read{j}"] = run_child([sys.executable, "-m", "lbdask", "read", args.dest, image,
                                             "-o", os.devnull], args.timeout)
            print(f"# read {image}: {json.dumps(results[f'read{j}'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
