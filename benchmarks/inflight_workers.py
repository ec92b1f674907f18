"""The bulk path keeps every worker busy (issue 25): migrate rate on 1, 4, 16 and 64 workers.

    python benchmarks/inflight_workers.py [--workers 1 4 16 64] [--per-worker 48] [--delay 2]
                                          [--batch 8] [--threads 2] [--side 64]

Each worker's model is a box-filter "VAE" (encoder: 8 x 8 mean, 3 latent channels;
decoder: nearest upsampling) whose encoder sleeps `--delay` seconds per image: a model call
that takes a fixed time and next to no CPU, as a GPU's would, so N workers can at best
migrate N times the images per second of one. The workers are threads of this process (in-process LocalCluster, the job connects to its
scheduler), which is what lets the benchmark install the model (`load_model` patched).
Each size migrates `--per-worker` x N small grainy PNGs (all latents: `min_psnr` 0, no
size rule), so every worker runs the same number of batches. The rate is the job's
batches phase (images / s; cluster start, model load and scan excluded), compared with N x
the one-worker rate: the target is >= 80 %. The CPU work per image (PNG decode, quantise,
shards, commits) all runs in this one process: keep N / delay well below what one core
does (the `cpu` column: process CPU seconds per wall second of the whole job): on a
loaded 2-core machine 2 s per image and batches of 8 keep 64 workers within it.
Prints a markdown table with machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import torch
import torch.nn.functional as F
from distributed import Client, LocalCluster
from PIL import Image

from lbdask.cluster.settings import load_cluster_settings
from lbdask.migrate.job import MigrationRequest, run_migration
from lbdask.models import loader
from lbdask.models.identity import fingerprint
from lbdask.models.latent_model import LatentModel
from lbdask.models.precision import Inference
from lbdask.models.registry import ModelSpec
from lbdask.representation.settings import load_job_settings

DOWNSAMPLE = 8


class SleepingMean(torch.nn.Module):
    """8 x 8 mean pooling that takes `delay` seconds per image of the batch, sleeping."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay * x.shape[0])
        return F.avg_pool2d(x, DOWNSAMPLE)


class Upsample(torch.nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=DOWNSAMPLE, mode="nearest")


def sleeping_model(delay: float) -> LatentModel:
    """The benchmark's model: latents are 8 x 8 means of the padded pixels (small, so every
    image is stored as a latent), encoding takes `delay` s per image."""
    spec = ModelSpec(architecture="tae", latent_channels=3, downsample=DOWNSAMPLE, pad_multiple=DOWNSAMPLE,
                     tile_threshold=2**20, tile_size=1024, activation_bytes_per_pixel=16, runtime="torch",
                     precision="fp32")
    config = {"backend": "box-filter", "latent_channels": 3, "downsample": DOWNSAMPLE, "delay_per_image": delay}
    return LatentModel("sleeping-box-filter", spec, SleepingMean(delay), Upsample(),
                       fingerprint(config, "none"), config, torch.device("cpu"), torch.float32,
                       Inference("torch", "fp32", "benchmark"))


def write_source(folder: Path, n: int, side: int) -> None:
    """`n` grainy `side` x `side` RGB PNGs."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, side)[None, :, None] + np.linspace(0, 50, side)[:, None, None]
    for i in range(n):
        pixels = np.clip(ramp + rng.normal(0, 4, (side, side, 3)) + (i % 7), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:06d}.png")


#: In-process workers share one process: each would take the whole process's memory for its
#: own (and pause the worker above 80 % of its limit), and 64 of them polling it every 100 ms
#: and the system every 500 ms take the CPU the job needs. The limit stays: it plans batches.
IN_PROCESS = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False,
              "distributed.admin.system-monitor.interval": "5s"}


def in_process_cluster(workers: int, threads: int) -> LocalCluster:
    """`workers` x `threads` worker threads in this process, 2 GiB planned per worker."""
    with dask.config.set(IN_PROCESS):
        return LocalCluster(n_workers=workers, threads_per_worker=threads, processes=False, dashboard_address=None,
                            memory_limit="2GiB")


def migrate_on(workers: int, threads: int, src: Path, dest: Path, batch: int) -> dict[str, Any]:
    """One migration on an in-process cluster of `workers` x `threads`; the job record plus
    `cpu` (process CPU seconds per wall second of the job)."""
    settings = load_job_settings().with_overrides(model="sleeping-box-filter", batch_size=batch, latent_bits=8,
                                                  min_psnr=0.0, max_latent_ratio=1e9)
    with in_process_cluster(workers, threads) as cluster, Client(cluster), dask.config.set(IN_PROCESS):
        req = MigrationRequest(str(src), str(dest), settings, load_cluster_settings(), scheduler=cluster.scheduler_address,
                               progress=False)
        cpu, wall = time.process_time(), time.perf_counter()
        record = run_migration(req, log=lambda _: None)
        record["cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--per-worker", type=int, default=48, help="images per worker")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds of model time per image")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    loader.load_model = lambda *a, **k: sleeping_model(args.delay)  # what each worker's plugin loads
    work = Path(tempfile.mkdtemp(prefix="lbdask-inflight-"))
    rows = []
    try:
        for n in args.workers:
            src = work / f"src{n}"
            write_source(src, args.per_worker * n, args.side)
            record = migrate_on(n, args.threads, src, work / f"arc{n}", args.batch)
            assert record["images_latent"] == args.per_worker * n, record
            rows.append((n, record))
            shutil.rmtree(work / f"arc{n}")
            shutil.rmtree(src)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores, {platform.python_version()}, "
          f"date: {datetime.date.today()}")
    print(f"{args.per_worker} PNGs of {args.side}x{args.side} per worker, batch {args.batch}, {args.threads} threads "
          f"per worker, model time {args.delay} s per image (ideal: {1 / args.delay:.2f} images/s per worker)\n")
    print("| workers | images | batches phase (s) | images/s | vs N x 1 worker | pixels in flight (total) | cpu |")
    print("|---|---|---|---|---|---|---|")
    one = rows[0][1]["batch_images_per_s"] / rows[0][0]
    for n, r in rows:
        rate = r["batch_images_per_s"]
        print(f"| {n} | {r['images_processed']} | {r['phase_seconds']['batches']:.1f} | {rate:.2f} | "
              f"{rate / (n * one):.0%} | {r['pixels_in_flight']['total']:,} | {r['cpu']:.2f} |")


if __name__ == "__main__":
    main()
