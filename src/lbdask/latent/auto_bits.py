"""`latent_bits: auto` with refinement: refine through each candidate precision, fewest bits
first, and keep the first whose stored latent meets the floor.

Refining once at 8 bits and then trying 6 asks a latent optimised for the 8-bit quantiser to
survive the 6-bit one; refining through the 6-bit quantiser itself reaches a higher stored
PSNR there, so more images meet the floor in fewer bits. Cost: an image is refined once per
precision below 16 that it tries (6, then 8), so at most twice the steps of a fixed precision.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lbdask.latent.codec import LatentCodec
from lbdask.latent.refine import FALLBACK_BITS, as_image_list, choose_bits_decoded, refine_latents


@dataclass
class AutoRefined:
    """Per image (indexed like the input batch): the latent to store and its precision."""

    z: np.ndarray                     # float32 (N, C, h, w), refined for its chosen precision
    bits: list[int]
    pixels: list[np.ndarray | None]   # decode of the stored latent at its precision (None: not decoded)
    psnr_initial: np.ndarray          # quantised z0 at the last precision refined for
    steps_taken: np.ndarray           # gradient steps, summed over the precisions tried
    seconds: float                    # refinement wall time, all precisions


def refine_fewest_bits(model, images_uint8, z0: np.ndarray, steps: int, min_psnr: float,
                       target_psnr: float | None = None, mode: str = "qat",
                       candidates: Sequence[int] = (6, 8, 16)) -> AutoRefined:
    """Refine each latent from `z0` at each candidate precision below 16, fewest bits first,
    until its stored decode meets `min_psnr`; images no candidate satisfies get 16 bits (the
    latent refined for the largest precision tried before). Each round refines only the images
    still undecided."""
    images = as_image_list(images_uint8)
    z0 = np.asarray(z0, dtype=np.float32)
    n = len(images)
    out = AutoRefined(z0.copy(), [FALLBACK_BITS] * n, [None] * n, np.full(n, np.nan),
                      np.zeros(n, dtype=np.int64), 0.0)
    pending = list(range(n))
    for bits in sorted(candidates):
        if not pending:
            break
        sub = [images[i] for i in pending]
        if bits != FALLBACK_BITS:
            res = refine_latents(model, LatentCodec(bits), sub, z0[pending], steps, target_psnr, mode=mode)
            out.z[pending], out.psnr_initial[pending] = res.z, res.psnr_initial
            out.steps_taken[pending] += res.steps_taken
            out.seconds += res.seconds
        chosen, decoded = choose_bits_decoded(model, sub, out.z[pending], min_psnr, candidates=(bits,))
        for i, got, pixels in zip(pending, chosen, decoded):
            if got == bits:
                out.bits[i], out.pixels[i] = bits, pixels
        pending = [i for i, got in zip(pending, chosen) if got != bits]
    return out
