"""Latent codec: what a float latent becomes on the store, and back.

Precision 16 keeps the encoder output as fp16; 8 and 6 bits quantise uniformly over a
range stored per channel (or per tensor), kept in uint16 because pcodec refuses 8-bit
integers by default. A checksum of the stored array bytes is verified on every decode,
and `compressed_size` tells how many bytes the store's pcodec serializer writes.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numcodecs import PCodec

from lbdask.errors import InputError, IntegrityError

#: Precisions the archive can store.
SUPPORTED_BITS = (16, 8, 6)
#: pcodec compression level used by the store's serializer and by `compressed_size`.
PCODEC_LEVEL = 8

_FP16_MAX = float(np.finfo(np.float16).max)


def pcodec() -> PCodec:
    """The numcodecs pcodec configuration the archive writes latents with."""
    return PCodec(level=PCODEC_LEVEL)


def compressed_size(data: np.ndarray) -> int:
    """Bytes pcodec writes for `data`: the latent's payload inside a shard."""
    return len(pcodec().encode(np.ascontiguousarray(data)))


def checksum(data: np.ndarray) -> str:
    """crc32 hex of the stored array's little-endian C-order bytes."""
    arr = np.ascontiguousarray(data)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return f"{zlib.crc32(arr.tobytes()) & 0xFFFFFFFF:08x}"


@dataclass
class EncodedLatent:
    """A latent as stored: the array plus what is needed to restore and check it."""

    data: np.ndarray  # float16 (bits 16) or uint16 (bits 8/6), shape (C, h, w)
    bits: int
    lo: list[float] | None  # quantisation range, per channel (len C) or per tensor (len 1)
    hi: list[float] | None
    checksum: str

    def verify(self) -> None:
        """Raise IntegrityError when the data no longer matches its checksum."""
        actual = checksum(self.data)
        if actual != self.checksum:
            raise IntegrityError(f"latent checksum mismatch: stored {self.checksum}, computed {actual}")


class LatentCodec:
    """Quantise float32 latents (C, h, w) to 16, 8 or 6 bits and restore them."""

    def __init__(self, bits: int = 16, per_channel: bool = True) -> None:
        if bits not in SUPPORTED_BITS:
            raise InputError(f"latent precision must be one of {SUPPORTED_BITS} bits, got {bits}")
        self.bits = bits
        self.per_channel = per_channel

    @property
    def levels(self) -> int:
        """Largest quantised value (2**bits - 1)."""
        return (1 << self.bits) - 1

    def encode(self, z: np.ndarray) -> EncodedLatent:
        """Turn a float latent (C, h, w) into the array the store keeps."""
        z = np.asarray(z)
        if z.ndim != 3:
            raise InputError(f"a latent must have shape (C, h, w), got {z.shape}")
        if not np.isfinite(z).all():
            raise InputError("latent contains NaN or infinite values; the encoder output is unusable")
        if self.bits == 16:
            if np.abs(z).max(initial=0.0) > _FP16_MAX:
                raise InputError(f"latent values exceed the fp16 range (|z| > {_FP16_MAX:g}); use 8 or 6 bits")
            data = z.astype(np.float16)
            return EncodedLatent(data, 16, None, None, checksum(data))
        z64 = z.astype(np.float64)
        axes = (1, 2) if self.per_channel else (0, 1, 2)
        lo = z64.min(axis=axes, keepdims=True).astype(np.float32).astype(np.float64)
        hi = z64.max(axis=axes, keepdims=True).astype(np.float32).astype(np.float64)
        span = hi - lo
        scale = np.divide(self.levels, span, out=np.zeros_like(span), where=span > 0)
        data = np.clip(np.rint((z64 - lo) * scale), 0, self.levels).astype(np.uint16)
        return EncodedLatent(data, self.bits, lo.ravel().tolist(), hi.ravel().tolist(), checksum(data))

    def decode(self, enc: EncodedLatent) -> np.ndarray:
        """Restore the float32 latent (C, h, w), after verifying the checksum."""
        enc.verify()
        if enc.bits == 16:
            return enc.data.astype(np.float32)
        if enc.lo is None or enc.hi is None:
            raise IntegrityError(f"{enc.bits}-bit latent has no quantisation range")
        levels = (1 << enc.bits) - 1
        lo = np.asarray(enc.lo, dtype=np.float64).reshape(-1, 1, 1)
        hi = np.asarray(enc.hi, dtype=np.float64).reshape(-1, 1, 1)
        return (lo + enc.data.astype(np.float64) * ((hi - lo) / levels)).astype(np.float32)
