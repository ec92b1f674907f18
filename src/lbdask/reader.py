"""Reading images back out of an archive, in this process: `lbdask.open(DEST).read(id)`.

Kept copies come back as the source's bytes (kept format `png`) or as a PNG with the
source's samples, mode, bit depth and chunks (`jxl`, see `lbdask.image.kept`); failed inputs as
their raw bytes (not a decodable PNG: `row(id).status` says so); latent images are decoded
with the model that wrote them (the row's fingerprint; `lbdask.models.row_models`) by the canonical decode
(`lbdask.latent.decode`), and lossy JPEG XL rows by libjxl, both as a PNG of the source's mode
family with its ancillary chunks restored.
"""
from __future__ import annotations

import os
from typing import Any

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import with_chunks
from lbdask.archive.objects import store_retries
from lbdask.errors import NotFoundError, UnknownImageError
from lbdask.models.row_models import RowModels


class ArchiveReader:
    """In-process reads from one archive; loads the archive's model on first latent read."""

    def __init__(self, archive: Archive, weights: str | os.PathLike | None = None, device: str | None = None,
                 precision: str | None = None, runtime: str | None = None) -> None:
        self.archive = archive
        self.weights = weights
        self.device = device
        self.precision, self.runtime = precision, runtime  # None: configs/models.yaml (auto)
        self._model: Any = None
        self.models = RowModels(archive, lambda: self.model, device=device, precision=precision, runtime=runtime)

    @property
    def model(self) -> Any:
        """The archive's model, loaded once and checked against the archive's fingerprint."""
        if self._model is None:
            from lbdask.models import load_model  # torch is imported only when a latent is read

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
        """The catalog row of `image_id`: UnknownImageError only when the reachable archive's
        catalog has none; StoreError when the archive stays unreachable (3 attempts)."""
        row = store_retries(lambda: self.archive.get_row(image_id), self.archive.url)
        if row is None:
            raise UnknownImageError(image_id, f"no image '{image_id}' in archive {self.archive.url}")
        return row

    def read(self, image_id: str) -> bytes:
        """The bytes of an archived input: a PNG (the source's for a kept copy, the decode for a
        latent or a lossy copy, a pixel copy as stored); for a failed input its raw bytes."""
        row = self.row(image_id)
        data = stored_copy(self.archive, row)
        return self.decode_png(row) if data is None else data

    def decode_png(self, row: CatalogRow) -> bytes:
        """Decode a latent row to the PNG a reader gets (the canonical decode), its chunks restored."""
        from lbdask.latent.decode import row_pixels, to_png  # numpy, numcodecs: only when a latent is read

        row = with_chunks(self.archive, row)  # read first: a damaged object fails before the decode
        return to_png(row_pixels(self.archive, self.models.for_row(row), row), row)


def stored_copy(archive: Archive, row: CatalogRow) -> bytes | None:
    """The bytes a reader gets for `row` without a model (its pixel copy, else its stored copy:
    kept copy, lossy copy or raw bytes of a failed input, docs/glossary.md), or None for a
    latent to decode; NotFoundError when the archive holds no copy. The one decision
    `lbdask read` and serving share."""
    if row.pixel is not None:  # a pixel-tier copy (lbdask.retier promote): no decoding
        return archive.read_pixels(row)
    if row.status == "latent":
        return None
    if row.original is not None:  # the stored copy (field name kept on disk), checked on read
        data = archive.read_original(row)
        if row.representation in ("png", "failed"):
            return data  # stored as a reader gets it: no codec imported (`lbdask read` starts fast)
        from lbdask.image import kept  # numpy, libjxl: only for jxl and lossy rows

        # a lossy copy is rebuilt with the row's chunks (a jxl kept copy holds its own)
        return kept.read_back(with_chunks(archive, row) if row.status == "lossy" else row, data)
    raise NotFoundError(f"image '{row.id}' was {row.status} ({row.reason}); the archive holds no copy of it")
