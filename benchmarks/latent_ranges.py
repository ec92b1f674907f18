"""Quantiser ranges and precisions below 6 bits: do per-tile or clipped ranges, or 5 and 4 bits,
buy PSNR per stored byte? (issue 27, docs/fidelity.md)

    python benchmarks/latent_ranges.py --crop 512 --limit 4

On matching-VAE crops (the TAEF2 decode of each corpus crop's one-shot latent z) the latent
that made the image is known: decode(z) is the image exactly, so the PSNR of decode(Q(z))
is the cost of the quantiser Q alone, the ceiling a refinement from that precision starts at.
Ranges: per channel (the codec's today), per channel clipped to the F and 1-F quantiles,
per channel and per T x T latent tile. Bytes: pcodec of the integers + 8 bytes (float32
lo/hi) per range.
"""
from __future__ import annotations

import numpy as np
from corpus_crops import crop_parser  # benchmarks/ is on the path when a script here runs

from lbdask.fidelity.rate_distortion import load_sources
from lbdask.image.quality import psnr
from lbdask.latent.codec import compressed_size
from lbdask.models import load_model

MODES = ("chan", "clip0.001", "clip0.005", "tile16", "tile32")


def ranges(z: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The latent viewed per range (channel or channel x tile) and its lo/hi of `mode`."""
    c, h, w = z.shape
    if mode.startswith("tile"):
        t = int(mode[4:])
        view = z.reshape(c, h // t, t, w // t, t)
        return view, view.min(axis=(2, 4), keepdims=True), view.max(axis=(2, 4), keepdims=True)
    if mode.startswith("clip"):
        f = float(mode[4:])
        return z, np.quantile(z, f, axis=(1, 2), keepdims=True), np.quantile(z, 1 - f, axis=(1, 2), keepdims=True)
    return z, z.min(axis=(1, 2), keepdims=True), z.max(axis=(1, 2), keepdims=True)


def quantise(z: np.ndarray, bits: int, mode: str) -> tuple[np.ndarray, int]:
    """The dequantised latent and the stored bytes (pcodec payload + lo/hi per range)."""
    levels = (1 << bits) - 1
    view, lo, hi = ranges(z.astype(np.float64), mode)
    q = np.clip(np.rint((view - lo) / (hi - lo) * levels), 0, levels)
    back = (lo + q * (hi - lo) / levels).reshape(z.shape).astype(np.float32)
    return back, compressed_size(q.reshape(z.shape).astype(np.uint16)) + 8 * lo.size


def main() -> None:
    p = crop_parser(__doc__, limit=4)
    p.add_argument("--bits", type=int, nargs="+", default=[8, 6, 5, 4])
    args = p.parse_args()
    model = load_model("taef2", weights=args.weights, device="cpu")
    crops = np.stack([s.rgb for s in load_sources(args.src, args.crop, args.limit)])
    z = model.encode(crops)
    made = model.decode(z, size=crops.shape[1:3])
    megapixels = args.crop * args.crop / 1e6
    print("| bits | ranges | KB/MP | PSNR mean (dB) | PSNR per crop (dB) |\n|---:|---|---:|---:|---|")
    for bits in args.bits:
        for mode in MODES:
            out = [quantise(zi, bits, mode) for zi in z]
            decoded = model.decode(np.stack([o[0] for o in out]), size=crops.shape[1:3])
            scores = [psnr(m, d) for m, d in zip(made, decoded)]
            print(f"| {bits} | {mode} | {np.mean([o[1] for o in out]) / 1000 / megapixels:.0f} | {np.mean(scores):.2f} | "
                  + " / ".join(f"{s:.2f}" for s in scores) + " |", flush=True)


if __name__ == "__main__":
    main()
