"""A child process's wall time, time to its first output line, lines and peak RSS (Linux),
for the benchmarks that run `lbdask` commands as a user would."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple


class ChildRun(NamedTuple):
    first_s: float  # seconds to the `first_line`-th line of stdout (the total if it has fewer)
    total_s: float
    rss_mb: float  # the largest VmHWM seen
    lines: int


def peak_rss_mb(pid: int, peak: list[float], done: threading.Event) -> None:
    """Poll the child's VmHWM (its own peak: ru_maxrss of a child counts the parent's pages
    it was forked with) until it exits; the largest value seen goes to peak[0]."""
    while not done.is_set():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        found = re.search(r"VmHWM:\s+(\d+) kB", text)
        if found:
            peak[0] = max(peak[0], int(found.group(1)) / 1024)
        done.wait(0.02)


def child(args: list[str], first_line: int = 2) -> ChildRun:
    """Run `args` with this process's sys.path as PYTHONPATH, reading its stdout line by line
    (`first_line` 2: `lbdask ls` writes a header first); raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    peak, done = [0.0], threading.Event()
    watcher = threading.Thread(target=peak_rss_mb, args=(proc.pid, peak, done))
    watcher.start()
    first, lines = None, 0
    for lines, _ in enumerate(proc.stdout, 1):
        if first is None and lines == first_line:
            first = time.perf_counter() - t0
    status = proc.wait()
    total = time.perf_counter() - t0
    done.set()
    watcher.join()
    if status:
        raise RuntimeError(f"{args} exited {status}")
    return ChildRun(first or total, total, peak[0], lines)
