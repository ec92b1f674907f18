"""CPU encode / decode speed and PSNR cost of each runtime and precision, against fp32 torch.

    python benchmarks/cpu_inference.py [--sizes 512 1024] [--repeats 3] [--configs torch-fp32 ...]

All configurations load in one process and are timed interleaved (repeat r of every
configuration before repeat r+1 of any), so a machine shared with other jobs slows them
alike; the speed-up column is the ratio to torch-fp32 from the same run. PSNR is of each
configuration's decode against torch-fp32's decode of the same latent (`decode`), and of
its encode+decode round trip against torch-fp32's round trip (`round trip`), over corpus
crops. Prints a markdown table with machine, CPU flags and date.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch
from model_throughput import CORPUS, sample_images

from lbdask.metrics import psnr
from lbdask.models import load_model
from lbdask.models.precision import cpu_has_native_bf16, openvino_available

TAEF2 = CORPUS.parent.parent / "models" / "taef2"
CONFIGS = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16")


def load(config: str):
    runtime, precision = config.split("-")
    return load_model("taef2", weights=TAEF2 if TAEF2.is_dir() else None, device="cpu",
                      runtime=runtime, precision=precision)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--images", type=int, default=2, help="crops per size (PSNR over all, timing per image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [c for c in args.configs if not c.startswith("openvino") or openvino_available()]
    models = {c: load(c) for c in configs}
    print(f"# CPU inference - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"native bf16: {cpu_has_native_bf16()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.1f} at start, {datetime.date.today().isoformat()}")
    for c, m in models.items():
        print(f"#   {c}: runs {m.inference.label}, device class {m.device_class}")
    print()
    print("| size | configuration | encode img/s | decode img/s | encode speed-up | decode speed-up "
          "| PSNR decode vs fp32 (dB) | PSNR round trip vs fp32 (dB) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        images = sample_images(args.images, size, CORPUS)
        ref_z = models["torch-fp32"].encode(images)
        ref_dec = models["torch-fp32"].decode(ref_z, (size, size))
        times: dict[str, dict[str, list[float]]] = {c: {"encode": [], "decode": []} for c in configs}
        for c, m in models.items():  # warm-up (and OpenVINO's first-shape set-up)
            m.encode(images[:1]), m.decode(ref_z[:1], (size, size))
        for _ in range(args.repeats):
            for c, m in models.items():
                times[c]["encode"].append(timed(lambda: m.encode(images[:1])))
                times[c]["decode"].append(timed(lambda: m.decode(ref_z[:1], (size, size))))
        base = {op: statistics.median(times["torch-fp32"][op]) for op in ("encode", "decode")}
        for c, m in models.items():
            enc, dec = (statistics.median(times[c][op]) for op in ("encode", "decode"))
            dec_psnr = np.mean([psnr(a, b) for a, b in zip(ref_dec, m.decode(ref_z, (size, size)))])
            trip = m.decode(m.encode(images), (size, size))
            trip_psnr = np.mean([psnr(a, b) for a, b in zip(ref_dec, trip)])
            print(f"| {size} | {c} | {1 / enc:.2f} | {1 / dec:.2f} | {base['encode'] / enc:.2f}x | "
                  f"{base['decode'] / dec:.2f}x | {dec_psnr:.1f} | {trip_psnr:.1f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
