"""End-to-end `lbdask migrate` throughput against its ceiling and a naive loop, same machine, same run.

    python benchmarks/migrate_throughput.py [--images 16] [--size 256] [--batch 8] [--workers 1]
                                            [--model taef2|sd35-random] [--device cpu|cuda]

On a GPU machine (issue: >= 80 % of the ceiling, >= 3x the naive loop):
    python benchmarks/migrate_throughput.py --device cuda --size 1024 --images 64 --batch 16
    python benchmarks/migrate_throughput.py --device cuda --size 1024 --images 64 --batch 16 --model sd35-random

Three figures, each in images/s over the same PNG folder (corpus crops, text chunks kept):
- ceiling: the model's batched encode + decode alone (pixels already in memory), the work
  each migrated image needs at minimum (encode, then decode to verify PSNR);
- naive: one image at a time in one process: read + decode PNG, encode, quantise, decode
  to verify, write the latent file;
- migrate: the Dask job (local cluster, started inside the timing) into a local archive,
  end to end and during its batches phase alone (cluster start-up, model load and scan
  excluded: the rate a long job settles at).
Prints a markdown table with machine and date. `sd35-random` is an AutoencoderKL with the
SD 3.5 VAE architecture and random weights (same compute, meaningless pixels), so the job
runs with `min_psnr` 0 and no size rule: every image goes through encode, verify and write.
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

import numpy as np
import torch
from gpu_bench import sd35_architecture_vae
from model_throughput import CORPUS, sample_images

from lbdask.cluster.settings import load_cluster_settings
from lbdask.image import pngio
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec
from lbdask.migrate.job import MigrationRequest, run_migration
from lbdask.models import load_model
from lbdask.representation.settings import load_job_settings

TAEF2 = CORPUS.parent.parent / "models" / "taef2"


def write_source(folder: Path, images: np.ndarray) -> None:
    """Write the crops as PNGs carrying a real corpus file's text chunks."""
    chunks = pngio.probe((CORPUS / "flux_girl_in_field.png").read_bytes()).chunks if CORPUS.is_dir() else ()
    folder.mkdir(parents=True)
    for i, rgb in enumerate(images):
        (folder / f"img{i:04d}.png").write_bytes(pngio.encode(rgb, None, chunks))


def ceiling(model, images: np.ndarray, batch: int) -> float:
    """Batched encode + decode of in-memory pixels (images/s)."""
    model.decode(model.encode(images[:batch]), size=images.shape[1:3])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        model.decode(model.encode(images[i:i + batch]), size=images.shape[1:3])
    return len(images) / (time.perf_counter() - start)


def naive(model, src: Path, out: Path, bits: int) -> float:
    """One file at a time: read, decode PNG, encode, quantise, verify decode, write (images/s)."""
    out.mkdir(parents=True)
    codec = LatentCodec(bits)
    files = sorted(src.glob("*.png"))
    start = time.perf_counter()
    for path in files:
        rgb, _ = pngio.decode(path.read_bytes(), 10**8)
        enc = codec.encode(model.encode(rgb[None])[0])
        back = model.decode(codec.decode(enc)[None], size=rgb.shape[:2])[0]
        psnr(rgb, back)
        np.save(out / (path.stem + ".npy"), enc.data)
    return len(files) / (time.perf_counter() - start)


def end_to_end(src: Path, dest: Path, model: str, weights: str | None, batch: int, workers: int,
               bits: int) -> tuple[float, dict]:
    """The Dask job with a local cluster, cluster start-up included (images/s, job summary)."""
    settings = load_job_settings().with_overrides(model=model, weights=weights, batch_size=batch, latent_bits=bits,
                                                  min_psnr=0.0, max_latent_ratio=1e9)
    req = MigrationRequest(str(src), str(dest), settings, load_cluster_settings(), workers=workers, progress=False)
    start = time.perf_counter()
    summary = run_migration(req, log=lambda _: None)
    return summary["images_processed"] / (time.perf_counter() - start), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--model", choices=("taef2", "sd35-random"), default="taef2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lbdask-bench-"))
    try:
        if args.model == "taef2":
            model, name, weights = load_model("taef2", weights=TAEF2, device=args.device), "taef2", str(TAEF2)
        else:
            name, weights = str(work / "sd35-random"), None
            model = sd35_architecture_vae(Path(name), args.device)
        images = sample_images(args.images, args.size, CORPUS)
        write_source(work / "src", images)
        ceil = ceiling(model, images, args.batch)
        slow = naive(model, work / "src", work / "naive", args.bits)
        del model  # the job's worker loads its own resident copy
        fast, summary = end_to_end(work / "src", work / "archive", name, weights, args.batch, args.workers, args.bits)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {device}; date: {datetime.date.today()}")
    print(f"{args.images} PNGs of {args.size}x{args.size}, {args.model}, batch {args.batch}, {args.bits}-bit latents, "
          f"{summary['workers']} worker(s) x {summary['threads']} thread(s)\n")
    print("| path | images/s | fraction of ceiling | vs naive loop |")
    print("|---|---|---|---|")
    for name, rate in (("ceiling: batched encode + decode only", ceil), ("naive sequential loop", slow),
                       ("lbdask migrate (Dask, end to end)", fast),
                       ("lbdask migrate, batches phase only", summary["batch_images_per_s"])):
        print(f"| {name} | {rate:.2f} | {rate / ceil:.2f} | {rate / slow:.2f}x |")
    print(f"\nmigrate outcomes: latent {summary['images_latent']}, kept {summary['images_kept_png']}, "
          f"failed {summary['images_failed']}; mean PSNR {summary['psnr_mean']:.2f} dB; "
          f"phases (s): {summary['phase_seconds']}")


if __name__ == "__main__":
    main()
