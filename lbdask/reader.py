"""Reading images back out of an archive, in this process: `lbdask.open(DEST).read(id)`.

Kept images come back as their original bytes; latent images are decoded with the model
the archive names (its fingerprint is checked) at their original size, and written as a
PNG of the source's mode family with the source's ancillary chunks restored.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import pngio
from .archive import Archive, CatalogRow
from .codec import LatentCodec
from .errors import LbdaskError, NotFoundError

#: Source modes whose read-back PNG carries an alpha channel (opaque alpha, 255).
ALPHA_MODES = frozenset({"RGBA", "LA"})


class ArchiveReader:
    """In-process reads from one archive; loads the archive's model on first latent read."""

    def __init__(self, archive: Archive, weights: str | os.PathLike | None = None, device: str | None = None,
                 precision: str | None = None, runtime: str | None = None) -> None:
        self.archive = archive
        self.weights = weights
        self.device = device
        self.precision, self.runtime = precision, runtime  # None: configs/models.yaml (auto)
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The archive's model, loaded once and checked against the archive's fingerprint."""
        if self._model is None:
            from .models import load_model  # torch is imported only when a latent is read

            info = self.archive.model_info
            model = load_model(info["name"], weights=self.weights, device=self.device,
                               precision=self.precision, runtime=self.runtime)
            self.archive.check_model(model.fingerprint, model.name)
            self._model = model
        return self._model

    @property
    def loaded_model(self) -> Any:
        """The model if a latent read has loaded it, else None (kept images need none)."""
        return self._model

    def row(self, image_id: str) -> CatalogRow:
        """The catalog row of `image_id`; NotFoundError when the archive has none."""
        row = self.archive.lookup(image_id)
        if row is None:
            raise NotFoundError(f"no image '{image_id}' in archive {self.archive.url}")
        return row

    def read(self, image_id: str) -> bytes:
        """PNG bytes of an archived image: the original for kept images, the decode for latents."""
        row = self.row(image_id)
        if row.status == "kept":
            return self.archive.read_original(row)
        if row.status != "latent":
            raise NotFoundError(f"image '{image_id}' failed to migrate ({row.reason}); the archive holds no copy of it")
        return self.decode_png(row)

    def decode_png(self, row: CatalogRow) -> bytes:
        """Decode a latent row to a PNG at the source's size and mode family."""
        enc = self.archive.read_latent(row)
        z = LatentCodec(enc.bits).decode(enc)
        rgb = self.model.decode(z[None], size=(row.height, row.width))[0]
        alpha = np.full(rgb.shape[:2], 255, np.uint8) if row.mode in ALPHA_MODES else None
        return pngio.encode(rgb, alpha, row.chunks)


def open(  # noqa: A001 - `lbdask.open` is the public name in the design contract
    dest: str,
    storage_options: dict[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    precision: str | None = None,
    runtime: str | None = None,
) -> ArchiveReader:
    """Open an archive for reading images back; `scheduler=` (serving cluster) is not built yet."""
    if scheduler is not None:
        raise LbdaskError("reading through a serving cluster (scheduler=...) is not implemented yet; "
                          "omit scheduler= to read in this process")
    return ArchiveReader(Archive.open(dest, mode="r", storage_options=storage_options), weights=weights, device=device,
                         precision=precision, runtime=runtime)
