"""Refinement of latents: gradient steps on z through the frozen decoder, quantisation-aware.

A one-shot encode is not the latent that the decoder turns into the closest image;
optimising the latent itself (Adam on z, squared pixel error) recovers several dB (measured in
docs/fidelity.md). What gets stored is the *quantised* latent, so every step decodes the
codec's round trip (straight-through estimator: forward through a torch mirror of the
codec that is equal to it bit for bit, gradient as if quantisation were the identity),
and every PSNR reported here is measured on the decode of the actually quantised and
dequantised latent, at the original image size.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec

#: Precision used when no candidate meets the minimum PSNR.
FALLBACK_BITS = 16
#: What each step decodes: "qat" the stored (quantised) latent with a straight-through
#: gradient, "float" the float latent (quantised only once refinement is over).
REFINE_MODES = ("qat", "float")
#: Early stop needs the target plus this margin in the training forward pass: the final,
#: authoritative check decodes in other batch compositions, and on CPU/GPU kernels a
#: different batch size can flip the 8-bit rounding of a few pixels (~1e-3 dB).
STOP_MARGIN_DB = 0.01


@dataclass
class RefineResult:
    """Per-image outcome of `refine_latents`; arrays are indexed like the input batch."""

    z: np.ndarray                # float32 (N, C, h, w): store with codec.encode(z[i])
    psnr_initial: np.ndarray     # float64 (N,): quantised z0, decoded, cropped
    psnr_final: np.ndarray       # float64 (N,): quantised z, decoded, cropped
    steps_taken: np.ndarray      # int64 (N,): gradient steps applied to each image
    seconds: float               # wall time of the whole call (device synchronised)
    checkpoints: dict[int, np.ndarray] = field(default_factory=dict)  # step -> z (N,C,h,w)


def as_image_list(images_uint8: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Accept an (N,h,w,3) array or a list of (h_i,w_i,3) arrays sharing one padded shape."""
    images = [np.asarray(im) for im in images_uint8]
    for im in images:
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected uint8 (h, w, 3) images, got {im.dtype} {im.shape}")
    return images


def quantise_roundtrip(codec: LatentCodec, z: np.ndarray) -> np.ndarray:
    """What the archive gives back for each latent: codec.decode(codec.encode(z[i]))."""
    return np.stack([codec.decode(codec.encode(zi)) for zi in np.asarray(z, dtype=np.float32)]).astype(np.float32)


def decode_cropped(model, z: np.ndarray, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Decode a batch at its padded size and crop each image back to its original size."""
    padded = (z.shape[2] * model.downsample, z.shape[3] * model.downsample)
    out = model.decode(np.asarray(z, dtype=np.float32), size=padded)
    return [out[i, : im.shape[0], : im.shape[1]] for i, im in enumerate(images)]


def quantised_psnr(model, codec: LatentCodec, images_uint8, z: np.ndarray) -> np.ndarray:
    """PSNR of each image against the decode of its quantised latent (what a reader sees)."""
    return quantised_decode(model, codec, as_image_list(images_uint8), z)[0]


def quantised_decode(model, codec: LatentCodec, images: Sequence[np.ndarray],
                     z: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """PSNR of each image against the decode of its quantised latent, and those decodes."""
    decoded = decode_cropped(model, quantise_roundtrip(codec, z), images)
    return np.array([psnr(im, dec) for im, dec in zip(images, decoded)], dtype=np.float64), decoded


def choose_bits(model, images_uint8, z: np.ndarray, min_psnr: float,
                candidates: Sequence[int] = (6, 8, 16)) -> list[int]:
    """Per image, the smallest precision whose quantised latent still meets `min_psnr`.

    Images that no candidate satisfies get 16 bits (the closest to the float latent).
    Each precision decodes only the images still undecided.
    """
    return choose_bits_decoded(model, images_uint8, z, min_psnr, candidates)[0]


def choose_bits_decoded(model, images_uint8, z: np.ndarray, min_psnr: float,
                        candidates: Sequence[int] = (6, 8, 16)) -> tuple[list[int], list[np.ndarray | None]]:
    """`choose_bits`, plus each image's decode at its chosen precision (None if not decoded).

    With one image per forward pass (`model.micro_batch == 1`, the CPU default) these are
    the canonical pixels of the stored latent (`lbdask.latent.decode`: decoded alone, cropped), so
    the migration records them instead of decoding the chosen latent once more.
    """
    images = as_image_list(images_uint8)
    z = np.asarray(z, dtype=np.float32)
    chosen: list[int | None] = [None] * len(images)
    pixels: list[np.ndarray | None] = [None] * len(images)
    for bits in sorted(candidates):
        pending = [i for i, c in enumerate(chosen) if c is None]
        if not pending:
            break
        scores, decoded = quantised_decode(model, LatentCodec(bits), [images[i] for i in pending], z[pending])
        for i, score, dec in zip(pending, scores, decoded):
            if score >= min_psnr or bits == FALLBACK_BITS:
                pixels[i] = dec
            if score >= min_psnr:
                chosen[i] = bits
    return [FALLBACK_BITS if c is None else c for c in chosen], pixels


@contextlib.contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[None]:
    """Ask for deterministic cuDNN/CUDA kernels while refining; restore the settings after."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def _targets(images: Sequence[np.ndarray], padded: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float [0,1] NCHW at the padded size plus a mask of their real pixels."""
    n = len(images)
    target = np.zeros((n, 3, *padded), dtype=np.float32)
    mask = np.zeros((n, 1, *padded), dtype=np.float32)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        target[i, :, :h, :w] = im.transpose(2, 0, 1) / 255.0
        mask[i, :, :h, :w] = 1.0
    return torch.from_numpy(target).to(device), torch.from_numpy(mask).to(device)


def fake_quantise(z: torch.Tensor, codec: LatentCodec) -> torch.Tensor:
    """`codec.decode(codec.encode(z_i))` for each latent of a batch, in torch, on z's device.

    Mirrors the codec's arithmetic (float32 range, float64 scale, round half to even) so the
    refinement loop sees the stored latent without a host round trip per step.
    """
    if codec.bits == 16:
        return z.half().float()
    z64 = z.double()
    dims = (2, 3) if codec.per_channel else (1, 2, 3)
    lo = z64.amin(dim=dims, keepdim=True)
    span = z64.amax(dim=dims, keepdim=True) - lo
    scale = torch.where(span > 0, codec.levels / span, torch.zeros_like(span))
    levels = torch.clamp(torch.round((z64 - lo) * scale), 0, codec.levels)
    return (lo + levels * (span / codec.levels)).float()


def refine_latents(model, codec: LatentCodec, images_uint8, z0: np.ndarray, steps: int,
                   target_psnr: float | None = None, lr: float = 0.02, seed: int = 0,
                   checkpoints: Sequence[int] = (), on_step: Callable[[], None] | None = None,
                   mode: str = "qat") -> RefineResult:
    """Optimise each latent so that its *quantised* decode matches the image (Adam, squared pixel error).

    Images in a batch share one padded shape (z0 is (N,C,h,w)); each image stops as soon as
    its quantised decode reaches `target_psnr` (frozen while the rest keep going). The
    decoder is never updated. `checkpoints` lists step counts at which to also keep a copy
    of all latents (used by the rate-distortion report; early-stopped images are kept as
    they stopped). `on_step` is called after each gradient step (progress bars). `mode`
    "float" optimises the unquantised latent instead (the baseline QAT is measured against;
    its early stop then looks at the float latent's decode, its reported PSNR at the stored one). Deterministic for a fixed seed and device.
    """
    images = as_image_list(images_uint8)
    z0 = np.asarray(z0, dtype=np.float32)
    if z0.ndim != 4 or len(images) != z0.shape[0]:
        raise ValueError(f"z0 must be (N, C, h, w) for {len(images)} images, got {z0.shape}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if mode not in REFINE_MODES:
        raise ValueError(f"refine mode must be one of {REFINE_MODES}, got {mode!r}")
    device = torch.device(model.device)
    started = time.perf_counter()
    psnr_initial = quantised_psnr(model, codec, images, z0)
    done = np.zeros(len(images), dtype=bool) if target_psnr is None else psnr_initial >= target_psnr
    steps_taken = np.zeros(len(images), dtype=np.int64)
    kept: dict[int, np.ndarray] = {0: z0.copy()} if 0 in checkpoints else {}
    padded = (z0.shape[2] * model.downsample, z0.shape[3] * model.downsample)
    target, mask = _targets(images, padded, device)
    pixels = mask.sum(dim=(1, 2, 3)) * 3
    z = torch.from_numpy(z0.copy()).to(device).requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), deterministic_kernels(device):
        torch.manual_seed(seed)
        for step in range(steps):
            active = torch.from_numpy(np.flatnonzero(~done)).to(device)
            if active.numel() == 0:
                break
            z_active = z[active]
            decoded = model.decode_tensor(_seen(z_active, codec, mode).to(model.dtype)).float()
            if target_psnr is not None and step > 0:
                score = _rounded_psnr(decoded.detach(), target[active], mask[active], pixels[active])
                done[active.cpu().numpy()[score >= target_psnr + STOP_MARGIN_DB]] = True
            still = torch.from_numpy(~done).to(device)[active]
            if not still.any():
                break
            # Sum (not mean) of squared errors: Adam ignores the scale, and per-pixel gradients
            # of a mean over a megapixel image would underflow fp16 and fall below Adam's eps.
            sse = ((decoded - target[active]) ** 2 * mask[active]).sum(dim=(1, 2, 3))
            before = z.detach().clone()
            optimiser.zero_grad(set_to_none=True)
            (sse * still).sum().backward()
            optimiser.step()
            with torch.no_grad():   # Adam's momentum would move frozen latents: put them back
                held = torch.from_numpy(done).to(device)
                z[held] = before[held]
            steps_taken[~done] += 1
            if step + 1 in checkpoints:
                kept[step + 1] = z.detach().cpu().numpy().copy()
            if on_step is not None:
                on_step()
    z_final = z.detach().cpu().numpy().astype(np.float32)
    for step in checkpoints:
        kept.setdefault(step, z_final.copy())
    psnr_final = quantised_psnr(model, codec, images, z_final)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return RefineResult(z=z_final, psnr_initial=psnr_initial, psnr_final=psnr_final,
                        steps_taken=steps_taken, seconds=time.perf_counter() - started, checkpoints=kept)


def _seen(z: torch.Tensor, codec: LatentCodec, mode: str) -> torch.Tensor:
    """The latent a step decodes: the stored one with a straight-through gradient (qat), or z."""
    if mode == "float":
        return z
    return z + (fake_quantise(z.detach(), codec) - z).detach()


def _rounded_psnr(decoded: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, pixels: torch.Tensor) -> np.ndarray:
    """PSNR of the decode after 8-bit rounding, per image, over the real (unpadded) pixels."""
    as_uint8 = torch.round(decoded.clamp(0, 1) * 255)
    mse = ((as_uint8 - torch.round(target * 255)) ** 2 * mask).sum(dim=(1, 2, 3)) / pixels
    return (10 * torch.log10(255.0**2 / mse)).cpu().numpy()
