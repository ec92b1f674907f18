"""The `encode` step: the resident model turns a decoded batch into latents and measures the
stored round trip (optional refinement, precision choice, quantise, decode again, PSNR).

Migration runs it as its `encode` task; re-tiering's demote calls `encode` and its
re-encode `encode_with` (with model Y, held by the move).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from distributed.metrics import context_meter

from lbdask.image.quality import psnr
from lbdask.latent.auto_bits import refine_fewest_bits
from lbdask.latent.codec import LatentCodec, compressed_size
from lbdask.latent.decode import decode_latent, decode_sha256
from lbdask.latent.refine import choose_bits_decoded, refine_latents
from lbdask.models.resident import resident_model
from lbdask.representation.batch import DecodedBatch, EncodedBatch
from lbdask.representation.settings import JobSettings


def _pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Edge-pad bottom/right to the bucket shape (what the model does for a single size)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, shape[0] - h), (0, shape[1] - w), (0, 0)), mode="edge")


def encode(decoded: DecodedBatch, settings: JobSettings) -> EncodedBatch | None:
    """Encode the candidates with the resident model and measure the stored round trip."""
    if not decoded.images:
        return None
    padded_h, padded_w = decoded.batch.padded
    with resident_model().use(padded_h * padded_w) as model:
        return encode_with(model, decoded, settings)


def encode_with(model: Any, decoded: DecodedBatch, settings: JobSettings) -> EncodedBatch:
    """`encode` with a given model (held exclusively by the caller): lbdask retier re-encode."""
    images = decoded.images
    started = time.perf_counter()
    with context_meter.meter("vae-encode"):
        z = model.encode(np.stack([_pad(im, decoded.batch.padded) for im in images]))
    if settings.latent_bits == "auto":
        z, bits, measured, psnr_initial, steps, refine_seconds = _auto_bits(model, images, z, settings)
    else:
        z, psnr_initial, steps, refine_seconds = _refine(model, images, z, settings.latent_bits, settings)
        bits, measured = [settings.latent_bits] * len(images), [None] * len(images)
    with context_meter.meter("quantise"):
        latents = [LatentCodec(b).encode(z[i]) for i, b in enumerate(bits)]
        stored = np.stack([LatentCodec(enc.bits).decode(enc) for enc in latents])
    with context_meter.meter("pcodec-size"):
        sizes = [compressed_size(enc.data) for enc in latents]
    with context_meter.meter("verify-decode"):
        # One image at a time, as `lbdask read` decodes: the recorded PSNR and decode
        # hash then describe exactly the pixels a reader gets on this device class.
        # choose-bits already decoded the chosen latents alone: those pixels are reused
        back = [measured[i] if measured[i] is not None else decode_latent(model, stored[i], im.shape[:2])
                for i, im in enumerate(images)]
    seconds = time.perf_counter() - started
    scores = [float(psnr(im, dec)) for im, dec in zip(images, back)]
    return EncodedBatch(latents, sizes, scores, psnr_initial, steps, [decode_sha256(d) for d in back],
                        model.device_class, model.fingerprint, seconds, refine_seconds)


def _refine(model: Any, images: list[np.ndarray], z: Any, bits: int,
            settings: JobSettings) -> tuple[Any, list[float | None], list[int], float]:
    """Gradient steps on the latents (`refine_steps`): the refined z, PSNR before, steps, seconds."""
    n = len(images)
    if settings.refine_steps <= 0:
        return z, [None] * n, [0] * n, 0.0
    with context_meter.meter("refine"):
        result = refine_latents(model, LatentCodec(bits), images, z, settings.refine_steps,
                                settings.target_psnr, mode=settings.refine_mode)
    return (result.z, [float(p) for p in result.psnr_initial], [int(s) for s in result.steps_taken],
            result.seconds)


def _auto_bits(model: Any, images: list[np.ndarray], z: Any, settings: JobSettings) -> tuple[
        Any, list[int], list[np.ndarray | None], list[float | None], list[int], float]:
    """`latent_bits: auto`: each image's fewest bits meeting `min_psnr`, chosen after refining
    at each candidate precision (lbdask.latent.auto_bits); z, bits, pixels, PSNR before, steps, seconds."""
    n = len(images)
    if settings.refine_steps <= 0:
        with context_meter.meter("choose-bits"):
            bits, measured = choose_bits_decoded(model, images, z, settings.min_psnr)
        initial, steps, seconds = [None] * n, [0] * n, 0.0
    else:
        with context_meter.meter("refine"):
            res = refine_fewest_bits(model, images, z, settings.refine_steps, settings.min_psnr,
                                     settings.target_psnr, mode=settings.refine_mode)
        z, bits, measured, seconds = res.z, res.bits, res.pixels, res.seconds
        initial, steps = [float(p) for p in res.psnr_initial], [int(s) for s in res.steps_taken]
    if model.micro_batch != 1:  # decoded in batches: not the canonical batch-of-one pixels
        measured = [None] * n
    return z, bits, measured, initial, steps, seconds
