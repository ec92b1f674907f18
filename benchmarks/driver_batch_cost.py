"""Driver cost per batch of `lbdask migrate`: what `submit_batch` spends before Dask (issue 25).

Plans `--batches` latent batches of 8 images, prepares their buckets and times the
driver's per-batch work (shard allocation, task keys) against an archive on a folder; Dask's
own `client.submit` is replaced by a recorder, so the figure is lbdask's share. Reported:
ms per batch over the first `--sample` batches after 0 and after `--batches` batches were
allocated (does it grow with the job?), and the whole plan's allocation time.

    python benchmarks/driver_batch_cost.py --batches 1000 100000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from lbdask.archive import Archive
from lbdask.cluster.settings import ClusterSettings
from lbdask.migrate.job import MigrationRequest, prepare_buckets, submit_batch
from lbdask.migrate.plan import plan_batches
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import SourceItem

INFO = {"name": "identity", "fingerprint": "bench", "latent_channels": 4, "downsample": 8, "pad_multiple": 16}


class RecordingClient:
    """Stands in for a distributed Client: counts submissions, runs nothing."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> str:
        self.submitted += 1
        return kwargs.get("key", "")


def _items(n: int) -> list[SourceItem]:
    """1024 x 1024 images: `batch_size` of them fill `batch_pixels`, so old and new plans agree."""
    return [SourceItem(f"img{i:08d}.png", 4000, f"{i:064x}", 1024, 1024, "RGB", 8) for i in range(n)]


def measure(batches: int, sample: int, dest: str) -> dict[str, float]:
    """ms per batch of `submit_batch` over the first and the last `sample` batches of a plan."""
    settings = JobSettings(latent_bits=16)
    arc = Archive.create(dest, INFO)
    req = MigrationRequest("src", dest, settings, ClusterSettings())
    items = _items(batches * settings.batch_size)
    t0 = time.perf_counter()
    plan = plan_batches(items, settings, INFO["pad_multiple"], shard_size=arc.shard_size)
    planned = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare_buckets(arc, plan, INFO, settings)
    prepared = time.perf_counter() - t0
    client = RecordingClient()

    def per_batch(part: list) -> float:
        t = time.perf_counter()
        for batch in part:
            submit_batch(client, req, batch, None)
        return (time.perf_counter() - t) * 1000 / len(part)

    first = per_batch(plan[:sample])
    for batch in plan[sample:-sample]:
        submit_batch(client, req, batch, None)
    last = per_batch(plan[-sample:])
    return {"batches": len(plan), "plan_s": planned, "prepare_s": prepared, "first_ms": first, "last_ms": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--sample", type=int, default=200, help="batches timed at each end")
    args = parser.parse_args()
    print("| planned batches | plan (s) | prepare buckets (s) | ms/batch, first | ms/batch, last |")
    print("|---|---|---|---|---|")
    for n in args.batches:
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(n, min(args.sample, n // 2), f"{tmp}/arc")
        print(f"| {r['batches']} | {r['plan_s']:.2f} | {r['prepare_s']:.3f} | {r['first_ms']:.3f} | {r['last_ms']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
