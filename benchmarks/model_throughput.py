"""TAEF2 encode / decode throughput (images/s) with batching, against batch 1 in the same run.

    python benchmarks/model_throughput.py [--sizes 256 512] [--batch 4] [--device cpu] [--threads N]

Prints a markdown table with the machine and date; numbers are medians over --repeats.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lbdask.models import load_model

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "ai-png"


def sample_images(n: int, size: int, corpus: Path) -> np.ndarray:
    """n real size x size crops from the corpus (random pixels when the corpus is absent)."""
    files = sorted(corpus.glob("*.png"))
    if not files:
        return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    crops = []
    for i in range(n):
        rgb = np.asarray(Image.open(files[i % len(files)]).convert("RGB"))
        h, w = rgb.shape[:2]
        y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
        crop = rgb[y:y + size, x:x + size]
        crops.append(np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1]), (0, 0)), mode="edge"))
    return np.stack(crops)


def images_per_second(fn, n_images: int, repeats: int) -> float:
    """Median images/s of `fn` (which processes n_images) over `repeats` timed runs after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return n_images / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default=None, help="TAEF2 weights folder (default: registry)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model("taef2", weights=args.weights, device=args.device)
    model.spec.batch_size = model.spec.cpu_batch_size = args.batch  # forward passes of --batch images
    print(f"# TAEF2 throughput - {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"device {model.device} {model.dtype}, {datetime.date.today().isoformat()}")
    print()
    print("| size | op | batch 1 img/s | batch %d img/s | speed-up |" % args.batch)
    print("|---|---|---|---|---|")
    for size in args.sizes:
        images = sample_images(args.batch, size, args.corpus)
        latents = model.encode(images)
        ops = {
            "encode": (lambda x: model.encode(x), images),
            "decode": (lambda z: model.decode(z, size=(size, size)), latents),
        }
        for op, (fn, data) in ops.items():
            single = images_per_second(lambda: fn(data[:1]), 1, args.repeats)
            batched = images_per_second(lambda: fn(data), args.batch, args.repeats)
            print(f"| {size} | {op} | {single:.2f} | {batched:.2f} | {batched / single:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
