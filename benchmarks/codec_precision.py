"""Latent precision benchmark: stored bytes and PSNR cost of 16/8/6-bit latents.

On 512 px center crops of the corpus's RGB images, encoded with the TAEF2 weights: mean
pcodec bytes per image and per megapixel for each precision, PSNR of the decode against
the source, and the PSNR lost against decoding the unquantised fp32 latent. Baselines in
the same run: the crop written as PNG, and the source files' bytes per megapixel.

    python benchmarks/codec_precision.py [--corpus DIR] [--weights DIR] [--limit N] [--per-tensor]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lbdask.fidelity.rate_distortion import center_crop
from lbdask.image import pngio
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec, compressed_size
from lbdask.models import load_model

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAX_PIXELS = 64 * 2**20


def rgb_crops(corpus: Path, size: int, limit: int | None) -> list[tuple[str, np.ndarray, float]]:
    """(name, crop, source bytes per megapixel) for every RGB PNG at least `size` px each way."""
    out = []
    for path in sorted(corpus.glob("*.png")):
        data = path.read_bytes()
        info = pngio.probe(data)
        if info.mode != "RGB" or info.has_alpha or min(info.width, info.height) < size:
            continue
        rgb, _ = pngio.decode(data, MAX_PIXELS)
        out.append((path.name, center_crop(rgb, size), len(data) / (info.pixels / 1e6)))
        if limit and len(out) >= limit:
            break
    return out


def variants(per_tensor: bool) -> list[tuple[str, LatentCodec]]:
    vs = [(f"{b}-bit", LatentCodec(b)) for b in (16, 8, 6)]
    if per_tensor:
        vs += [(f"{b}-bit per-tensor", LatentCodec(b, per_channel=False)) for b in (8, 6)]
    return vs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "ai-png")
    ap.add_argument("--weights", type=Path, default=SHARED / "models" / "taef2")
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--limit", type=int, default=None, help="at most this many images")
    ap.add_argument("--per-tensor", action="store_true", help="also per-tensor quantisation ranges")
    ap.add_argument("--json", type=Path, default=REPO / ".bench" / "codec_precision.json")
    args = ap.parse_args()

    model = load_model("taef2", weights=args.weights, device="cpu")
    crops = rgb_crops(args.corpus, args.crop, args.limit)
    mp = args.crop * args.crop / 1e6
    names = ["fp32 latent (raw)"] + [n for n, _ in variants(args.per_tensor)]
    stats: dict[str, dict[str, list[float]]] = {n: {"bytes": [], "psnr": [], "cost": []} for n in names}
    png_bytes, src_bpmp = [], []
    start = time.perf_counter()
    for name, rgb, bpmp in crops:
        png_bytes.append(len(pngio.encode(rgb)))
        src_bpmp.append(bpmp)
        z = model.encode(rgb[None])[0]
        ref = psnr(rgb, model.decode(z[None], size=rgb.shape[:2])[0])
        stats[names[0]]["bytes"].append(z.nbytes)
        stats[names[0]]["psnr"].append(ref)
        stats[names[0]]["cost"].append(0.0)
        for vname, codec in variants(args.per_tensor):
            enc = codec.encode(z)
            back = model.decode(codec.decode(enc)[None], size=rgb.shape[:2])[0]
            p = psnr(rgb, back)
            stats[vname]["bytes"].append(compressed_size(enc.data))
            stats[vname]["psnr"].append(p)
            stats[vname]["cost"].append(ref - p)
        print(f"  {name}: fp32 {ref:.2f} dB", flush=True)
    elapsed = time.perf_counter() - start

    png_mean = float(np.mean(png_bytes))
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), {dt.date.today()}; "
          f"{len(crops)} RGB images, {args.crop}x{args.crop} center crops, TAEF2, pcodec level 8; {elapsed:.0f} s")
    header = "| stored as | bytes / image | bytes / MP | vs crop PNG | PSNR mean (dB) | PSNR min (dB) | cost vs fp32 mean / max (dB) |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|",
             f"| PNG of the crop (baseline) | {png_mean:,.0f} | {png_mean / mp:,.0f} | 1.00 | lossless | lossless | - |",
             f"| source PNG files (whole images) | - | {np.mean(src_bpmp):,.0f} | - | lossless | lossless | - |"]
    for n in names:
        s = stats[n]
        b = float(np.mean(s["bytes"]))
        lines.append(f"| {n} | {b:,.0f} | {b / mp:,.0f} | {b / png_mean:.3f} | {np.mean(s['psnr']):.2f} | "
                     f"{np.min(s['psnr']):.2f} | {np.mean(s['cost']):.3f} / {np.max(s['cost']):.3f} |")
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"images": [c[0] for c in crops], "png_bytes": png_bytes, "stats": stats}, indent=1))


if __name__ == "__main__":
    main()
