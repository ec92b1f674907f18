"""Cold lookups on S3 read the index of every run that may hold the id at once: a fresh handle's
lookup then waits two round trips (footers, then partitions), not two per run. The requests
are the same ones `RunReader.get` makes one run after the other; this only overlaps them. On
a folder a read does not wait for a network, and threads would only add CPU (~1 ms a lookup)."""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lbdask.archive.runs import RunInfo, RunReader

#: Concurrent reads of one cold lookup (a manifest lists O(log N) runs).
THREADS = 8


def prefetch(reader: RunReader, runs: Sequence[RunInfo], image_id: str) -> None:
    """Read and cache the footer and index partition of each of `runs` that may hold `image_id`
    and has them not cached yet, concurrently when two or more do. Best effort: a read that
    fails here fails again, and is reported, in the lookup that follows."""
    if not reader.loc.is_remote:
        return
    cold = [r for r in runs if r.min_id <= image_id <= r.max_id and not reader.indexed(r, image_id)]
    if len(cold) < 2:
        return
    with ThreadPoolExecutor(min(THREADS, len(cold)), thread_name_prefix="lbdask-index") as pool:
        for future in [pool.submit(reader.index, run, image_id) for run in cold]:
            future.exception()  # waited for; errors are left to the lookup
