"""Kept formats: how an image that is not a latent is stored, and how it becomes a PNG again.

- `png`: the source file, byte for byte (what a user who deletes the source needs when
  anything may hash or sign the file's bytes).
- `jxl`: the PNG's stored samples (palette indices, 1-16-bit grey, RGB, alpha) as lossless
  JPEG XL plus the PNG without its image data (`pngsamples.skeleton`: IHDR, PLTE, tRNS,
  text, ICC, ... in order). Reading gives a PNG with the source's samples, mode, bit depth
  and chunks; only the deflate stream differs. Every object is decoded and compared with
  the source before it is used; anything else keeps the PNG and says why.
- `jxl-lossy`, `avif-lossy` (status "lossy", `kept_format` jxl / avif): 8-bit RGB as lossy
  JPEG XL at the largest distance, or as 8- or 10-bit AVIF (`lbdask.image.avif`) at the lowest
  quality level, found whose decode still meets the PSNR floor; read like a latent (RGB,
  chunks from the row).
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np

from lbdask.errors import InputError, IntegrityError
from lbdask.image import avif, pngio, pngsamples
from lbdask.image.avif import AVIF_BITS, AVIF_LEVELS
from lbdask.image.quality import psnr

KEPT_FORMATS = ("png", "jxl")
LOSSY_FORMATS = ("jxl", "avif")
#: `--lossy-fallback` policies: the lossy candidates each one searches ("best": all of them).
LOSSY_POLICIES = {"off": (), "jxl": ("jxl",), "avif": ("avif",), "best": ("jxl", "avif")}
#: First bytes of a `jxl` kept object; then a big-endian u32 skeleton length, the skeleton, the codestream.
JXL_MAGIC = b"LBDKJXL1"
#: Distances the lossy search may use (libjxl accepts 0.1 ... 25) and the bisection steps.
LOSSY_DISTANCES = (0.1, 25.0)
LOSSY_STEPS = 7


@dataclass(frozen=True)
class KeptObject:
    """What a kept image stores: its format, the bytes, and why jxl was not used (if so)."""

    format: str
    data: bytes
    note: str | None = None
    pixels_sha256: str | None = None  # jxl: sha256 of the source's samples (`samples_sha256`)


@dataclass(frozen=True)
class LossyObject:
    """A lossy encode (JPEG XL or AVIF) that meets the PSNR floor, with its measured fidelity."""

    data: bytes
    distance: float | None  # jxl: the JPEG XL distance; avif: None
    psnr: float
    decode_sha256: str  # `samples_sha256` of the decoded RGB (checked by `lbdask verify`)
    format: str = "jxl"  # one of LOSSY_FORMATS: the row's `kept_format`
    quality: int | None = None  # avif: the quality level
    bits: int = 8  # avif: bits per sample (8 or 10)


def samples_sha256(pixels: np.ndarray) -> str:
    """sha256 of samples as little-endian bytes in C order, with dtype and shape mixed in."""
    head = f"{pixels.dtype.str}{pixels.shape}".encode()
    return hashlib.sha256(head + np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()).hexdigest()


def _is_animated(png: bytes) -> bool:
    return any(ctype == "acTL" for ctype, _ in pngio.iter_chunks(png))


def jxl_object(png: bytes, effort: int) -> tuple[bytes, np.ndarray]:
    """Encode the samples of `png` as lossless JPEG XL in a kept object; also the samples."""
    pixels = pngsamples.samples(png)
    skel = pngsamples.skeleton(png)
    code = imagecodecs.jpegxl_encode(pixels, lossless=True, effort=effort)
    return JXL_MAGIC + struct.pack(">I", len(skel)) + skel + bytes(code), pixels


def jxl_to_png(data: bytes) -> bytes:
    """The PNG a `jxl` kept object stands for."""
    if not data.startswith(JXL_MAGIC) or len(data) < len(JXL_MAGIC) + 4:
        raise IntegrityError("not an lbdask jxl kept object (bad magic)")
    (n,) = struct.unpack_from(">I", data, len(JXL_MAGIC))
    start = len(JXL_MAGIC) + 4
    skel, code = data[start : start + n], data[start + n :]
    try:
        pixels = np.asarray(imagecodecs.jpegxl_decode(code))
    except Exception as exc:  # noqa: BLE001 - libjxl errors come as several types
        raise IntegrityError(f"JPEG XL codestream does not decode: {exc}") from None
    hdr = pngsamples.header(skel)
    if hdr.bit_depth < 16 and pixels.dtype != np.uint8:
        raise IntegrityError(f"JPEG XL decoded as {pixels.dtype}, the PNG has {hdr.bit_depth}-bit samples")
    return pngsamples.rebuild(skel, pixels)


def mismatch(source: np.ndarray, png: bytes) -> str | None:
    """Why the PNG `png` does not hold exactly `source`'s samples; None when it does."""
    back = pngsamples.samples(png)
    if back.dtype != source.dtype or back.shape != source.shape:
        return f"decoded {back.dtype} {back.shape} instead of {source.dtype} {source.shape}"
    differ = int(np.count_nonzero(back != source))
    return f"{differ} sample(s) differ after the round trip" if differ else None


def encode_kept(png: bytes, fmt: str, effort: int = 7, max_pixels: int | None = None) -> KeptObject:
    """The kept object of the source `png` in format `fmt`, falling back to the PNG.

    A jxl object is used only when it decodes, through `to_png`, to the source's samples,
    header and chunks, and is smaller than the PNG; otherwise the note says why not. No
    error of the codec ever fails the image: the PNG is always a correct copy. Images above
    `max_pixels` stay PNG (libjxl's lossless encoder needs several times the pixels in memory).
    """
    if fmt == "png":
        return KeptObject("png", png)
    if fmt not in KEPT_FORMATS:
        raise InputError(f"unknown kept format {fmt!r}; use one of {', '.join(KEPT_FORMATS)}")
    try:
        if _is_animated(png):
            return KeptObject("png", png, "jxl: animated PNG kept whole")
        hdr = pngsamples.header(png)
        if max_pixels is not None and hdr.width * hdr.height > max_pixels:
            return KeptObject("png", png, f"jxl: more than {max_pixels} pixels")
        data, pixels = jxl_object(png, effort)
        back = to_png(data, "jxl")
        why = mismatch(pixels, back)
        if why is None and _layout(back) != _layout(png):
            why = "header or chunks differ after the round trip"
    except Exception as exc:  # noqa: BLE001 - libjxl, libpng and Pillow raise many types
        return KeptObject("png", png, f"jxl failed: {type(exc).__name__}: {str(exc)[:200]}")
    if why is not None:
        return KeptObject("png", png, f"jxl round trip not pixel-identical: {why}")
    if len(data) >= len(png):
        return KeptObject("png", png, f"jxl not smaller ({len(data)} >= {len(png)} bytes)")
    return KeptObject("jxl", data, pixels_sha256=samples_sha256(pixels))


def _layout(png: bytes) -> list[tuple[str, bytes]]:
    """Every chunk but the image data, in order; IHDR without its interlace flag."""
    return [(t, b[:12] if t == "IHDR" else b) for t, b in pngio.iter_chunks(png) if t != "IDAT"]


def to_png(data: bytes, fmt: str | None) -> bytes:
    """PNG bytes of a kept object (`fmt` None: written before kept formats existed, a PNG)."""
    if fmt in (None, "png"):
        return data
    if fmt == "jxl":
        return jxl_to_png(data)
    raise IntegrityError(f"unknown kept format {fmt!r} (written by a newer lbdask?)")


# lossy JPEG XL and AVIF ------------------------------------------------------------------
def lossy_decode(data: bytes, fmt: str | None = "jxl") -> np.ndarray:
    """uint8 RGB (h, w, 3) of a lossy object of format `fmt` (None: jxl, as rows before AVIF)."""
    if fmt == "avif":
        return avif.decode(data)
    if fmt not in (None, "jxl"):
        raise IntegrityError(f"unknown lossy format {fmt!r} (written by a newer lbdask?)")
    try:
        return np.ascontiguousarray(np.asarray(imagecodecs.jpegxl_decode(data))[..., :3], dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        raise IntegrityError(f"JPEG XL codestream does not decode: {exc}") from None


def _lossy_try(rgb: np.ndarray, distance: float, effort: int) -> tuple[bytes, float]:
    data = bytes(imagecodecs.jpegxl_encode(rgb, distance=distance, effort=effort))
    return data, float(psnr(rgb, lossy_decode(data)))


def search_lossy(rgb: np.ndarray, min_psnr: float, effort: int = 3, steps: int = LOSSY_STEPS) -> LossyObject | None:
    """The smallest lossy JPEG XL found whose decode meets `min_psnr` (None: not even at 0.1).

    Bisection on log(distance) between LOSSY_DISTANCES: PSNR falls as distance grows, so
    the search closes in on the largest distance that still meets the floor. Every
    candidate's PSNR is measured on its real decode, so whatever is returned meets it.
    """
    lo, hi = LOSSY_DISTANCES
    best: tuple[bytes, float, float] | None = None

    def consider(distance: float) -> bool:
        nonlocal best
        data, score = _lossy_try(rgb, distance, effort)
        ok = score >= min_psnr
        if ok and (best is None or len(data) < len(best[0])):
            best = (data, distance, score)
        return ok

    if not consider(hi):
        if not consider(lo):
            return None
        for _ in range(steps):
            mid = float(np.sqrt(lo * hi))
            lo, hi = (mid, hi) if consider(mid) else (lo, mid)
    data, distance, score = best
    return LossyObject(data, round(distance, 4), score, samples_sha256(lossy_decode(data)))


def search_avif(rgb: np.ndarray, min_psnr: float, bits: int = 8, speed: int = 8) -> LossyObject | None:
    """The smallest AVIF found whose decode meets `min_psnr` (None: not even at level 99).

    Bisection on the integer quality level between AVIF_LEVELS: PSNR rises with the level,
    so the search closes in on the lowest level that still meets the floor; as for JPEG XL,
    each candidate counts only by the PSNR of its real decode.
    """
    found: dict[int, tuple[bytes, float]] = {}

    def passes(level: int) -> bool:
        data = avif.encode(rgb, level, bits, speed)
        found[level] = (data, float(psnr(rgb, avif.decode(data))))
        return found[level][1] >= min_psnr

    lo, hi = AVIF_LEVELS
    if not passes(hi):
        return None
    if not passes(lo):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    level, (data, score) = min(((k, v) for k, v in found.items() if v[1] >= min_psnr), key=lambda kv: len(kv[1][0]))
    return LossyObject(data, None, score, samples_sha256(avif.decode(data)), "avif", level, bits)


def search_fallback(rgb: np.ndarray, policy: str, min_psnr: float, jxl_effort: int = 3,
                    avif_speed: int = 8) -> LossyObject | None:
    """The smallest passing lossy candidate of `policy` (LOSSY_POLICIES): lossy JPEG XL,
    AVIF at 8 and 10 bits, or all of them; None when none meets `min_psnr`."""
    found: list[LossyObject | None] = []
    if "jxl" in LOSSY_POLICIES[policy]:
        found.append(search_lossy(rgb, min_psnr, jxl_effort))
    if "avif" in LOSSY_POLICIES[policy]:
        found += [search_avif(rgb, min_psnr, bits, avif_speed) for bits in AVIF_BITS]
    passing = [f for f in found if f is not None]
    return min(passing, key=lambda f: len(f.data)) if passing else None


def lossy_to_png(data: bytes, alpha: bool, chunks: list[tuple[str, bytes]], fmt: str | None = "jxl") -> bytes:
    """PNG of a lossy object: RGB (+ opaque alpha for RGBA/LA sources) with the row's chunks."""
    rgb = lossy_decode(data, fmt)
    return pngio.encode(rgb, np.full(rgb.shape[:2], 255, np.uint8) if alpha else None, chunks)


# reading ---------------------------------------------------------------------------------
def read_back(row: Any, data: bytes) -> bytes:
    """What a reader gets from a non-latent row's stored object (`Archive.read_original`):
    the one implementation `lbdask read` (`lbdask.reader`) and serving (`lbdask.serve`) share.

    kept: the PNG (`png`: the object itself; `jxl`: rebuilt with the source's samples and
    chunks); lossy: the JPEG XL or AVIF decode (`kept_format`) as a PNG of the source's mode
    family with its chunks; failed: the raw source bytes as they are.
    """
    if row.status == "kept":
        return to_png(data, row.kept_format)
    if row.status == "lossy":
        return lossy_to_png(data, row.mode in pngio.ALPHA_MODES, row.chunks, row.kept_format)
    return data
