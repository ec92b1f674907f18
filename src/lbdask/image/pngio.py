"""PNG probing, decoding and re-encoding with the ancillary chunks users care about.

`probe` walks the chunk list without inflating pixels (a scan of millions of files must
not decode them); `decode` turns a PNG into uint8 RGB (+ alpha) and turns every kind of
bad input - corrupt, truncated, decompression bomb - into a one-line `InputError`;
`encode` writes a PNG and re-inserts the source's text/ICC chunks byte for byte.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from lbdask.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Ancillary chunks kept raw and restored on read: text metadata and the ICC profile.
PRESERVED_CHUNK_TYPES = ("tEXt", "iTXt", "zTXt", "iCCP")

#: PNG colour type -> Pillow-style mode name (before tRNS is taken into account).
#: Source modes whose read-back PNG carries an alpha channel (opaque alpha, 255, after a latent decode).
ALPHA_MODES = frozenset({"RGBA", "LA"})
_COLOUR_TYPE_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
_VALID_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class PngChunk(NamedTuple):
    """One ancillary chunk as stored in the file: 4-letter type and the raw data bytes."""

    type: str
    data: bytes


@dataclass(frozen=True)
class PngInfo:
    """What a PNG header says about the image, read without decoding pixels."""

    width: int
    height: int
    mode: str            # "L" | "LA" | "RGB" | "RGBA" | "P" (colour type; see has_alpha for tRNS)
    bit_depth: int
    has_alpha: bool      # an alpha channel or a tRNS chunk
    chunks: tuple[PngChunk, ...]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def iter_chunks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield (type, data) for every chunk up to IEND, checking lengths and CRCs."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError("not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise InputError("truncated PNG: file ends before IEND")
        length, raw_type = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise InputError(f"truncated PNG: chunk {raw_type.decode('latin-1')!r} runs past the end of the file")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(raw_type + body) != crc:
            raise InputError(f"corrupt PNG: CRC mismatch in chunk {raw_type.decode('latin-1')!r}")
        ctype = raw_type.decode("latin-1")
        yield ctype, body
        if ctype == "IEND":
            return
        pos = end


def probe(data: bytes) -> PngInfo:
    """Read size, colour type, bit depth, transparency and preserved chunks; no pixel decoding."""
    chunks = iter_chunks(data)
    ctype, ihdr = next(chunks)
    if ctype != "IHDR" or len(ihdr) != 13:
        raise InputError("corrupt PNG: first chunk is not a valid IHDR")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", ihdr[:10])
    if width == 0 or height == 0:
        raise InputError(f"corrupt PNG: zero image size {width}x{height}")
    if bit_depth not in _VALID_BIT_DEPTHS.get(colour_type, ()):
        raise InputError(f"corrupt PNG: invalid colour type {colour_type} / bit depth {bit_depth}")
    has_trns = False
    saw_idat = False
    preserved: list[PngChunk] = []
    for ctype, body in chunks:
        if ctype == "tRNS":
            has_trns = True
        elif ctype == "IDAT":
            saw_idat = True
        elif ctype in PRESERVED_CHUNK_TYPES:
            preserved.append(PngChunk(ctype, body))
    if not saw_idat:
        raise InputError("corrupt PNG: no image data (IDAT)")
    return PngInfo(
        width=width,
        height=height,
        mode=_COLOUR_TYPE_MODES[colour_type],
        bit_depth=bit_depth,
        has_alpha=colour_type in (4, 6) or has_trns,
        chunks=tuple(preserved),
    )


def decode(data: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode to uint8 RGB (h, w, 3) and alpha (h, w) or None; InputError on bad input.

    Images above `max_pixels` are refused before any pixel is inflated (decompression
    bombs declare huge sizes in a tiny file); 16-bit samples are reduced to 8 bits.
    """
    info = probe(data)
    if info.pixels > max_pixels:
        raise InputError(
            f"decompression bomb guard: {info.width}x{info.height} = {info.pixels} pixels exceeds the limit of {max_pixels}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                im.load()
                return _to_rgb_alpha(im)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as exc:
        raise InputError(f"corrupt PNG: {exc}") from None


def _to_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale: keep the high byte
        grey = (np.asarray(im, dtype=np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return np.asarray(im.convert("RGB")), None


def chunk_bytes(chunk: PngChunk) -> bytes:
    """Serialise one chunk as it appears in a file: length, type, data, CRC."""
    raw_type = chunk.type.encode("latin-1")
    return struct.pack(">I", len(chunk.data)) + raw_type + chunk.data + struct.pack(">I", zlib.crc32(raw_type + chunk.data))


def encode(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    chunks: Iterable[PngChunk | tuple[str, bytes]] = (),
    compress_level: int = 6,
) -> bytes:
    """Write uint8 RGB (+ alpha) as PNG with `chunks` re-inserted right after IHDR.

    Putting them before the first IDAT is valid for every preserved type (iCCP must
    precede image data; text chunks may go anywhere).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"encode expects uint8 (h, w, 3) pixels, got {rgb.dtype} {rgb.shape}")
    if alpha is not None:
        pixels = np.concatenate([rgb, np.asarray(alpha, dtype=np.uint8)[:, :, None]], axis=2)
        im = Image.fromarray(np.ascontiguousarray(pixels))
    else:
        im = Image.fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    plain = buf.getvalue()
    extra = b"".join(chunk_bytes(PngChunk(*c)) for c in chunks)
    ihdr_end = len(PNG_SIGNATURE) + 8 + 13 + 4
    return plain[:ihdr_end] + extra + plain[ihdr_end:]
