"""What a lookup reads before it asks the runs one after the other, newest first.

Once per run and handle, the footer of every run too large to be held whole (`held_runs.py`),
whether or not it may hold the id: a later lookup then reads at most one object per such run
(its index partition with its blocks, or a block), not a footer first; a lookup that stopped at
a newer run, or an id outside a run's range, would otherwise leave the footer for later.
On S3, also the index of every run that may hold the id, all at once: a fresh handle's lookup
then waits two round trips (footers, then partitions), not two per run. The requests are the
ones `RunReader.get` would make one run after the other; this only overlaps them. On a folder a
read does not wait for a network, and threads would only add CPU (~1 ms a lookup).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from lbdask.archive import held_runs
from lbdask.archive.runs import RunInfo, RunReader

#: Concurrent reads of one cold lookup (a manifest lists O(log N) runs).
THREADS = 8


def prefetch(reader: RunReader, runs: Sequence[RunInfo], image_id: str) -> None:
    """Read the footers of `runs` too large to be held that `reader` has not read yet and, on S3,
    the footer and index partition of each of `runs` that may hold `image_id` and has them not
    cached (concurrently when two or more reads are due). Best effort: a read that fails here
    fails again, and is reported, in the lookup that follows when it needs that run."""
    remote = reader.loc.is_remote
    cold = [r for r in runs if r.min_id <= image_id <= r.max_id and not reader.indexed(r, image_id)] if remote else []
    reads: list[tuple[Callable[..., object], tuple[object, ...]]] = [
        (reader.footer, (r,)) for r in runs if held_runs.too_large(r.size) and not reader.has_footer(r) and r not in cold]
    reads += [(reader.index, (r, image_id)) for r in cold]
    if len(reads) < 2 or not remote:
        for read, args in reads:
            _quietly(read, *args)
        return
    with ThreadPoolExecutor(min(THREADS, len(reads)), thread_name_prefix="lbdask-index") as pool:
        for future in [pool.submit(read, *args) for read, args in reads]:
            future.exception()  # waited for; errors are left to the lookup


def _quietly(read: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(Exception):  # best effort, as a future's: the lookup reports what it needs
        read(*args)
