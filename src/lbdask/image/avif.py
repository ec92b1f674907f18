"""AVIF (libavif through imagecodecs) for lossy copies: 8-bit RGB in, 8-bit RGB out.

A 10-bit AVIF holds the 8-bit source scaled to 0...1023 and reads back scaled to 0...255,
both by integer rounding, so a decode is the same bytes on every machine that runs libavif's
decoder. The quality level (0 worst ... 100 lossless) is what the lossy search varies.
"""
from __future__ import annotations

import imagecodecs
import numpy as np

from lbdask.errors import IntegrityError

#: Bit depths a lossy AVIF may have.
AVIF_BITS = (8, 10)
#: Quality levels the lossy search may use (100 is lossless and never worth it for a lossy copy).
AVIF_LEVELS = (0, 99)


def encode(rgb: np.ndarray, level: int, bits: int = 8, speed: int = 8) -> bytes:
    """AVIF of uint8 RGB `rgb` at quality `level` and `bits` per sample."""
    if bits not in AVIF_BITS:
        raise ValueError(f"AVIF bits must be one of {AVIF_BITS}, not {bits!r}")
    src = rgb if bits == 8 else ((rgb.astype(np.uint32) * 1023 + 127) // 255).astype(np.uint16)
    return bytes(imagecodecs.avif_encode(src, level=level, speed=speed, bitspersample=bits))


def decode(data: bytes) -> np.ndarray:
    """uint8 RGB (h, w, 3) of an AVIF object (10-bit samples rounded to 8 bits)."""
    try:
        out = np.asarray(imagecodecs.avif_decode(data))
    except Exception as exc:  # noqa: BLE001 - libavif errors come as several types
        raise IntegrityError(f"AVIF does not decode: {exc}") from None
    if out.ndim != 3 or out.shape[2] < 3:
        raise IntegrityError(f"AVIF decoded as {out.shape}, not RGB")
    out = out[..., :3]
    if out.dtype != np.uint8:
        out = (out.astype(np.uint32) * 255 + 511) // 1023
    return np.ascontiguousarray(out, dtype=np.uint8)
