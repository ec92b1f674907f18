"""GPU fast path: decode latency/throughput per decode engine, encode throughput, memory, FLOP ceiling.

    python benchmarks/gpu_bench.py [--taef2-weights DIR] [--out FILE]     # on an H100 / H200
    python benchmarks/gpu_bench.py --smoke                                # CPU check, seconds

Models: an AutoencoderKL with the SD 3.5 VAE architecture (random weights: speed only,
never fidelity) and TAEF2. For each model, size and batch: decode ms per batch and images/s
for every decode engine that runs (eager, compile, tensorrt), encode images/s, peak GPU memory,
and the arithmetic ceiling (peak bf16 FLOP/s / FLOPs per image). Timings go through the
public numpy API, so they include host<->device copies and uint8 conversion.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lbdask.models import LatentModel, load_model
from lbdask.models.decode_engines import attach_decode_engine

REPO = Path(__file__).resolve().parent.parent

#: The SD 3.5 VAE architecture (stabilityai/stable-diffusion-3.5-large, subfolder vae).
SD35_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=16,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=1.5305,
    shift_factor=0.0609,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)


def sd35_architecture_vae(folder: Path, device: str, narrow: int = 1) -> LatentModel:
    """Save a randomly initialised SD 3.5-architecture AutoencoderKL and load it like any VAE folder.

    `narrow` divides the channel widths (same depth, attention and latent space) for smoke runs.
    """
    from diffusers import AutoencoderKL

    config = dict(SD35_VAE_CONFIG)
    config["block_out_channels"] = tuple(c // narrow for c in config["block_out_channels"])
    config["norm_num_groups"] = config["norm_num_groups"] // narrow
    torch.manual_seed(0)
    AutoencoderKL(**config).save_pretrained(folder)
    return load_model(folder, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, iters: int) -> float:
    """Median wall time of `fn` over `iters` runs after one warm-up (which also compiles/builds)."""
    fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flops_per_image(module: torch.nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass on a batch-1 example, counted by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(example)
    return float(counter.get_total_flops())


def peak_memory_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def environment(device: torch.device) -> str:
    """Device name, driver, CUDA and torch versions, host and date."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            driver = "unknown"
        gpu = f"{name}, driver {driver}, CUDA {torch.version.cuda}"
    else:
        gpu = f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return f"{gpu}, torch {torch.__version__}, host {platform.node()}, {datetime.date.today().isoformat()}"


def bench_model(model: LatentModel, sizes, batches, engines, iters, peak_flops, device) -> list[str]:
    """Table rows for one model: every size x batch x decode engine that runs here."""
    rows = []
    rng = np.random.default_rng(0)
    model.spec.batch_size = max(batches)  # one pass per batch; TensorRT profile up to the largest batch
    for size in sizes:
        c, lh, lw = model.latent_shape(size, size)
        z1 = torch.randn(1, c, lh, lw, device=device, dtype=model.dtype)
        x1 = torch.rand(1, 3, size, size, device=device, dtype=model.dtype)
        dec_flops = flops_per_image(model.decoder, z1)
        enc_flops = flops_per_image(model.encoder, x1)
        for engine in engines:
            attach_decode_engine(model, engine)
            if model.decode_engine != engine:
                rows.append(f"| {model.name} | {size} | - | {engine} | not available here | | | | | |")
                continue
            for batch in batches:
                images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                latents = rng.standard_normal((batch, c, lh, lw)).astype(np.float32)
                reset_memory(device)
                try:
                    dec_s = median_seconds(lambda: model.decode(latents, size=(size, size)), device, iters)
                    enc_s = median_seconds(lambda: model.encode(images), device, iters) if engine == "eager" else None
                except torch.OutOfMemoryError:
                    rows.append(f"| {model.name} | {size} | {batch} | {engine} | out of memory | | | | | |")
                    continue
                ceiling = peak_flops / dec_flops
                dec_ips = batch / dec_s
                enc = f"{batch / enc_s:.1f}" if enc_s else "-"
                rows.append(
                    f"| {model.name} | {size} | {batch} | {engine} | {dec_s * 1e3:.1f} | {dec_ips:.1f} | "
                    f"{enc} | {peak_memory_gib(device)} | {dec_flops / 1e9:.3g} / {enc_flops / 1e9:.3g} | "
                    f"{ceiling:.0f} ({100 * dec_ips / ceiling:.1f}%) |"
                )
                print(rows[-1], flush=True)
        attach_decode_engine(model, "eager")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and widths, 1 iteration, eager only (runs on CPU)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--engines", nargs="+", default=["eager", "compile", "tensorrt"])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=["sd35-arch", "taef2"])
    parser.add_argument("--taef2-weights", default=None, help="TAEF2 folder (default: the registry's)")
    parser.add_argument("--peak-flops", type=float, default=989e12, help="peak dense bf16 FLOP/s (H100 SXM: 989e12)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.batches, args.iters, args.engines = [32], [1, 2], 1, ["eager"]
        torch.set_num_threads(1)  # a smoke check must not fight other processes for cores
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    header = [
        f"# GPU fast path - {environment(device)}",
        f"peak {args.peak_flops:.3g} FLOP/s; ceiling = peak / decode FLOPs per image; "
        f"{args.iters} timed iterations (median) after a warm-up",
        "",
        "| model | px | batch | decode engine | decode ms/batch | decode img/s | encode img/s (eager) | "
        "peak GiB | GFLOP/img dec / enc | ceiling img/s (achieved) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "sd35-arch":
                narrow = 8 if args.smoke else 1
                model = sd35_architecture_vae(Path(tmp) / "sd35-arch", str(device), narrow)
                model.name = "sd35-arch (random)" if narrow == 1 else f"sd35-arch/{narrow} (random)"
            else:
                model = load_model(name, weights=args.taef2_weights if name == "taef2" else None, device=str(device))
            rows += bench_model(model, args.sizes, args.batches, args.engines, args.iters, args.peak_flops, device)
            del model
            reset_memory(device)
    if args.out:
        args.out.write_text("\n".join(header + rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
