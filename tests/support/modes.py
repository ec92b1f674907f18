"""PNG sources of every mode and bit depth a kept copy must round-trip, with text chunks."""
from __future__ import annotations

import io

import imagecodecs
import numpy as np
from PIL import Image, PngImagePlugin

from lbdask.image import pngio

TEXT = {"parameters": "a fennec, 20 steps", "comment": "üñï"}


def textured(c: int, dtype=np.uint8, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth shapes with a little grain, like a photo: JPEG XL stores it in fewer bytes than deflate."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.5 + 0.3 * np.sin(3 * x + k) + 0.2 * np.cos(4 * y * (k + 1)) for k in range(c)]
    noisy = np.stack(planes, -1) * 0.8 * top + rng.normal(0, top / 255, (h, w, c))
    out = np.clip(noisy, 0, top).astype(dtype)
    return out[..., 0] if c == 1 else out


def pil_png(im: Image.Image, **save) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", TEXT["parameters"])
    info.add_itxt("comment", TEXT["comment"], zip=True)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info, **save)
    return buf.getvalue()


def with_text(png: bytes) -> bytes:
    """Insert a tEXt chunk after IHDR (for PNGs written by imagecodecs)."""
    return pngio.PNG_SIGNATURE + b"".join(
        pngio.chunk_bytes(pngio.PngChunk(t, b)) + (pngio.chunk_bytes(pngio.PngChunk("tEXt", b"parameters\0x")) if t == "IHDR" else b"")
        for t, b in pngio.iter_chunks(png))


def palette_png(**save) -> bytes:
    im = Image.fromarray((textured(1) // 2).astype(np.uint8), "P")
    im.putpalette([v for i in range(256) for v in ((i * 7) % 256, 255 - i, i)])
    return pil_png(im, transparency=bytes([0, 64, 128] + [255] * 197), **save)


SOURCES = {
    "RGB": lambda: pil_png(Image.fromarray(textured(3))),
    "RGBA": lambda: pil_png(Image.fromarray(textured(4))),
    "L": lambda: pil_png(Image.fromarray(textured(1))),
    "LA": lambda: pil_png(Image.fromarray(textured(2), "LA")),
    "P+tRNS": palette_png,
    "P 4-bit": lambda: pil_png(Image.fromarray((textured(1) // 16).astype(np.uint8), "P"), bits=4),
    "L 1-bit": lambda: pil_png(Image.fromarray(textured(1)).convert("1")),
    "L+tRNS": lambda: pil_png(Image.fromarray(textured(1)), transparency=7),
    "I;16": lambda: pil_png(Image.fromarray(textured(1, np.uint16))),
    "RGB 16-bit": lambda: with_text(imagecodecs.png_encode(textured(3, np.uint16))),
    "RGBA 16-bit": lambda: with_text(imagecodecs.png_encode(textured(4, np.uint16))),
    "LA 16-bit": lambda: with_text(imagecodecs.png_encode(textured(2, np.uint16))),
}
