"""A PNG's exact stored samples, and a PNG rebuilt around new image data.

A lossless kept format must give back the source's pixels *as the PNG stores them*: the
palette indices of a `P` image (not their colours), 1/2/4-bit grey values, 16-bit
samples and the alpha channel. `samples` returns exactly those; `skeleton` is the source
file without its image data (IHDR, PLTE, tRNS, text, ICC and every other chunk, in order);
`rebuild` puts samples back into a skeleton, so everything but the deflate stream of the
image data is the source's own bytes.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import imagecodecs
import numpy as np
from PIL import Image

from lbdask.errors import InputError
from lbdask.image.pngio import PNG_SIGNATURE, PngChunk, chunk_bytes, iter_chunks

#: Samples per pixel of each PNG colour type (palette: one index; tRNS is a chunk, not a channel).
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Marks where the image data goes back in a skeleton (an empty IDAT chunk).
IDAT_PLACEHOLDER = PngChunk("IDAT", b"")


@dataclass(frozen=True)
class Header:
    """The IHDR fields that decide how samples are laid out."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return CHANNELS[self.colour_type]


def header(png: bytes) -> Header:
    """The IHDR of `png` (InputError when it has none)."""
    ctype, body = next(iter_chunks(png))
    if ctype != "IHDR" or len(body) != 13:
        raise InputError("corrupt PNG: first chunk is not a valid IHDR")
    width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
    if colour not in CHANNELS:
        raise InputError(f"corrupt PNG: invalid colour type {colour}")
    return Header(width, height, depth, colour, interlace)


def samples(png: bytes) -> np.ndarray:
    """The stored samples: uint8 or uint16 (h, w) or (h, w, channels), values as in the file.

    Palette images give their indices, 1/2/4-bit grey its unscaled values; a tRNS chunk
    adds no channel (it stays a chunk of the skeleton).
    """
    hdr = header(png)
    try:
        if hdr.colour_type == 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(png), formats=["PNG"]) as im:
                    if im.mode != "P":
                        raise InputError(f"palette PNG decoded as mode {im.mode}")
                    return np.asarray(im, dtype=np.uint8).copy()
        out = np.asarray(imagecodecs.png_decode(png))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - libpng and Pillow raise many types for bad data
        raise InputError(f"corrupt PNG: {exc}") from None
    if out.ndim == 3 and out.shape[2] > hdr.channels:  # libpng turned tRNS into an alpha channel
        out = out[:, :, : hdr.channels]
    if out.ndim == 3 and hdr.channels == 1:
        out = out[:, :, 0]
    if hdr.bit_depth < 8:  # libpng scales 1/2/4-bit grey to 0..255 by bit replication
        out = out // (255 // (2**hdr.bit_depth - 1))
    return np.ascontiguousarray(out, dtype=np.uint16 if hdr.bit_depth == 16 else np.uint8)


def skeleton(png: bytes) -> bytes:
    """`png` without image data: every other chunk in order, one empty IDAT where it was."""
    out = [PNG_SIGNATURE]
    placed = False
    for ctype, body in iter_chunks(png):
        if ctype == "IDAT":
            if not placed:
                out.append(chunk_bytes(IDAT_PLACEHOLDER))
                placed = True
            continue
        out.append(chunk_bytes(PngChunk(ctype, body)))
    return b"".join(out)


def _pack_rows(pixels: np.ndarray, depth: int) -> bytes:
    """Scanlines of 1/2/4-bit samples, each with filter byte 0 (None), bit-packed MSB first."""
    per_byte = 8 // depth
    h, w = pixels.shape[:2]
    padded = np.zeros((h, -(-w // per_byte) * per_byte), np.uint8)
    padded[:, :w] = pixels
    groups = padded.reshape(h, -1, per_byte)
    shifts = np.arange(per_byte - 1, -1, -1, dtype=np.uint8) * depth
    packed = np.bitwise_or.reduce(groups << shifts, axis=2).astype(np.uint8)
    return np.concatenate([np.zeros((h, 1), np.uint8), packed], axis=1).tobytes()


def _idat_stream(pixels: np.ndarray, hdr: Header) -> bytes:
    """The zlib stream of the image data for `pixels` laid out as `hdr` says (not interlaced)."""
    if hdr.bit_depth < 8:
        return zlib.compress(_pack_rows(pixels, hdr.bit_depth), 9)
    # libpng's filter choice; for palette indices an 8-bit grey scanline has the same layout
    encoded = imagecodecs.png_encode(pixels)
    return b"".join(body for ctype, body in iter_chunks(encoded) if ctype == "IDAT")


def rebuild(skel: bytes, pixels: np.ndarray) -> bytes:
    """A PNG made of the skeleton's chunks with `pixels` as its (non-interlaced) image data."""
    hdr = header(skel)
    expected = (hdr.height, hdr.width) + ((hdr.channels,) if hdr.channels > 1 else ())
    if pixels.shape != expected:
        raise InputError(f"samples of shape {pixels.shape} do not fit a PNG header of {expected}")
    out = [PNG_SIGNATURE]
    for ctype, body in iter_chunks(skel):
        if ctype == "IHDR" and body[12]:
            body = body[:12] + b"\x00"  # the rebuilt image data is not interlaced
        if ctype == "IDAT":
            body = _idat_stream(pixels, hdr)
        out.append(chunk_bytes(PngChunk(ctype, body)))
    return b"".join(out)
