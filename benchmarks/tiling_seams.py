"""Tiled against untiled encode + decode of one image large enough to be tiled: PSNR and a crop.

    python benchmarks/tiling_seams.py [--size 1536] [--image NAME] [--out docs/img/tiling-seam.png]

The image (a corpus photo resized to size x size) goes through the default model twice:
tiled as configured (configs/models.yaml) and whole (threshold lifted). Prints PSNR of each
against the source and of tiled against whole, over the image and over the 32 px bands
around the tile seams, and saves a crop across a seam: source | whole | tiled | 8x difference.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
from pathlib import Path

import numpy as np
from memory_by_size import CORPUS, TAEF2
from PIL import Image

from lbdask.image.quality import psnr
from lbdask.models import load_model
from lbdask.models.tiling import tile_grid

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--image", default="flux_girl_in_field.png")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "tiling-seam.png")
    args = parser.parse_args()
    model = load_model("taef2", weights=TAEF2 if TAEF2.is_dir() else None, device="cpu")
    size = args.size
    src = np.asarray(Image.open(CORPUS / args.image).convert("RGB").resize((size, size), Image.BICUBIC))
    spec = model.spec
    assert model.needs_tiles(size, size), "pick a size above tile_threshold"
    tiled = model.decode(model.encode(src[None]), (size, size))[0]
    model.spec = dataclasses.replace(spec, tile_threshold=size * size)
    whole = model.decode(model.encode(src[None]), (size, size))[0]
    starts, tile = tile_grid(size, spec.tile_size, spec.tile_overlap, model.downsample)
    seams = [s + spec.tile_overlap // 2 for s in starts[1:]]  # middle of each blend ramp, roughly
    band = np.zeros((size, size), bool)
    for s in seams:
        band[:, max(0, s - 16):s + 16] = band[max(0, s - 16):s + 16, :] = True
    print(f"# tiled vs whole - {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{datetime.date.today()}, {model.inference.label}; {args.image} resized to {size}x{size}; tiles "
          f"{len(starts)}x{len(starts)} of {tile} px (tile_size {spec.tile_size}, overlap {spec.tile_overlap})\n")
    print("| comparison | whole image PSNR (dB) | 32 px seam bands PSNR (dB) |")
    print("|---|---|---|")
    for name, a, b in (("whole vs source", whole, src), ("tiled vs source", tiled, src), ("tiled vs whole", tiled, whole)):
        print(f"| {name} | {psnr(a, b):.2f} | {psnr(a[band], b[band]):.2f} |")
    s = seams[0]
    y0, x0 = size // 2 - 96, s - 96
    crops = [im[y0:y0 + 192, x0:x0 + 192] for im in (src, whole, tiled)]
    diff = np.clip(np.abs(tiled.astype(int) - whole.astype(int)) * 8, 0, 255).astype(np.uint8)[y0:y0 + 192, x0:x0 + 192]
    strip = np.concatenate([*crops, diff], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(args.out)
    print(f"\ncrop across the seam at x={s}: {args.out.relative_to(REPO)} (source | whole | tiled | 8x |tiled-whole|)")


if __name__ == "__main__":
    main()
