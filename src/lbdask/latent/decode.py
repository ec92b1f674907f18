"""The canonical decode: a stored latent back to the pixels and PNG a reader gets.

One definition for everyone who turns a latent into pixels - `lbdask read`
(`src/lbdask/reader.py`), `lbdask verify` (`src/lbdask/verify.py`), the migration's measuring
decode (`lbdask.migrate.tasks`) and the serving path - because the migration records
`decode_sha256` of exactly these pixels and verify compares against it:

1. dequantise the stored array (`LatentCodec(bits).decode`, checksum verified);
2. decode it alone, as a batch of one: kernels may round a pixel differently when the
   batch size changes, so bit-exactness is defined for a batch of one on one device class;
3. crop to the source's size (the model decodes the padded latent);
4. as PNG: the source's mode family (opaque alpha for RGBA/LA sources) and its ancillary
   chunks restored.

The model is passed in; nothing here imports torch.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from lbdask.image import pngio
from lbdask.latent.codec import EncodedLatent, LatentCodec


def decode_latent(model: Any, z: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Decode one dequantised latent (C,h,w) alone to uint8 RGB (height, width, 3), cropped to `size`."""
    return model.decode(np.asarray(z, dtype=np.float32)[None], size=size)[0]


def decode_stored(model: Any, enc: EncodedLatent, size: tuple[int, int]) -> np.ndarray:
    """Dequantise a stored latent and decode it (steps 1-3): the pixels `decode_sha256` records."""
    return decode_latent(model, LatentCodec(enc.bits).decode(enc), size)


def decode_sha256(rgb: np.ndarray) -> str:
    """sha256 of decoded uint8 RGB bytes (C order), recorded per latent row for `lbdask verify`."""
    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest()


def row_pixels(archive: Any, model: Any, row: Any) -> np.ndarray:
    """The canonical pixels of a latent catalog row of `archive` (an `lbdask.archive.Archive`)."""
    return decode_stored(model, archive.read_latent(row), (row.height, row.width))


def to_png(rgb: np.ndarray, row: Any) -> bytes:
    """Decoded pixels as the PNG a reader gets (step 4): the row's mode family and chunks."""
    alpha = np.full(rgb.shape[:2], 255, np.uint8) if row.mode in pngio.ALPHA_MODES else None
    return pngio.encode(rgb, alpha, row.chunks)
