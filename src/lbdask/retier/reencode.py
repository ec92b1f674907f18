"""The re-encode move: latents written by model X -> latents of model Y (`lbdask retier`).

Each object is re-encoded from the best copy there is: the source PNG when the policy
names the migrated source and the file is still there with the sha256 its row recorded,
else the pixel-tier copy, else the decode of the old latent with model X. Y's latents
go to Y's own buckets (`model_table.bucket_for`), are read back and checked, and only
then does a new catalog batch point the rows at them; the new row records the fidelity
change in `reencoded` (model it came from, PSNR before and after, the copy used). The
new PSNR is measured against that copy, through the same PSNR floor as demote: a row
whose new latent falls under `min_psnr` keeps its old latent. The old latent stays in
X's bucket until the sweep (`sweep.py`) deletes its shard, once no row references any
latent in it. A re-encoded row loses its pixel-tier copy (that was X's decode), which the
sweep deletes too.

Models are loaded once per worker process (Y by the policy's `to`/`weights`, X by the
archive's model table) and one re-encode chunk at a time uses them.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.model_table import bucket_for
from lbdask.config import adopt
from lbdask.image import pngio
from lbdask.latent.decode import row_pixels
from lbdask.models.row_models import RowModels, load_entry
from lbdask.representation.batch import Batch, DecodedBatch
from lbdask.representation.encode import encode_with
from lbdask.representation.fate import decide_candidates, psnr_floor
from lbdask.representation.shard import write_latents
from lbdask.retier.moves import Chunk, ChunkResult, MoveContext
from lbdask.storage import open_location

#: Copies a re-encode reads from, best first.
COPIES = ("source", "pixel", "latent")

_LOCK = threading.RLock()
_MODELS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class ReencodeSpec:
    """What one run re-encodes, and with what (MoveContext.reencode)."""

    from_fingerprint: str
    to: str  # registry name or an absolute folder: model Y
    weights: str | None  # Y's weights folder (absolute) or None
    primary_weights: str | None  # the archive's own model's weights (`--weights`): decodes its old latents
    source: str | None  # the migrated SRC (source PNGs), or None
    min_psnr: float  # the gate's floor for the new latent (dB, against the copy it came from)
    #: the driver's model configs (`resident.model_configs`): a long-lived worker loads Y and X by
    #: the driver's `--config-dir`, not by whatever an earlier job's plugin left it
    configs: dict[str, Any] = field(default_factory=dict, compare=False)


def _cached(key: tuple, load: Any, configs: dict[str, Any]) -> Any:
    """The model under `key` in this process, loaded once with the driver's `configs` adopted."""
    with _LOCK:
        if key not in _MODELS:
            if configs:
                adopt(configs)
            _MODELS[key] = load()
        return _MODELS[key]


def target_model(spec: ReencodeSpec, precision: str | None, runtime: str | None) -> Any:
    """Model Y in this process (loaded once)."""
    from lbdask.models import load_model

    return _cached(("to", spec.to, spec.weights, precision, runtime),
                   lambda: load_model(spec.to, weights=spec.weights, precision=precision, runtime=runtime), spec.configs)


def target_info(spec: ReencodeSpec, precision: str | None, runtime: str | None) -> dict[str, Any]:
    """Dask task (`reencode-model-info`): Y's archive metadata, as a worker loads it."""
    return target_model(spec, precision, runtime).model_info


def old_models(arc: Archive, spec: ReencodeSpec, precision: str | None, runtime: str | None) -> RowModels:
    """The models of the archive's table in this process, to decode old latents."""
    options = {"precision": precision, "runtime": runtime}
    primary = arc.model_info | {"load": {"model": arc.model_info["name"], "weights": spec.primary_weights}}
    key = (arc.url, spec.primary_weights, precision, runtime)
    return _cached(("old", *key), lambda: RowModels(arc, lambda: _cached(("primary", *key), lambda: load_entry(primary, **options),
                                                                         spec.configs), **options), spec.configs)


def best_copy(arc: Archive, row: CatalogRow, spec: ReencodeSpec, models: RowModels, max_pixels: int,
              options: dict | None) -> tuple[np.ndarray, str]:
    """The pixels to re-encode `row` from and which copy they are (one of COPIES)."""
    if spec.source and row.source_sha256:
        src = open_location(spec.source, options)
        try:
            data = src.fs.cat_file(src.path(row.id))
        except (FileNotFoundError, OSError):
            data = None
        if data is not None and hashlib.sha256(data).hexdigest() == row.source_sha256:
            return pngio.decode(data, max_pixels)[0], "source"
    if row.pixel is not None:
        return pngio.decode(arc.read_pixels(row), max_pixels)[0], "pixel"
    return row_pixels(arc, models.for_row(row), row), "latent"


def reencode(arc: Archive, rows: list[CatalogRow], chunk: Chunk, ctx: MoveContext, res: ChunkResult) -> list[CatalogRow]:
    """Latents of model X -> latents of model Y, each checked as stored before its row moves."""
    spec: ReencodeSpec = ctx.reencode
    settings = ctx.settings.with_overrides(min_psnr=spec.min_psnr)
    options = arc.storage_options
    decoded = DecodedBatch(Batch(chunk.batch_id, [], padded=chunk.padded, shards=chunk.shards), {}, {}, {})
    copies, by_id = {}, {}
    with _LOCK:  # one chunk at a time uses this process's models
        model = target_model(spec, settings.precision, settings.runtime)
        models = old_models(arc, spec, settings.precision, settings.runtime)
        for row in rows:
            rgb, copies[row.id] = best_copy(arc, row, spec, models, settings.bomb_pixels, options)
            decoded.candidates.append(row.id)
            decoded.images.append(rgb)
            by_id[row.id] = row
        encoded = encode_with(model, decoded, settings)
    fates = decide_candidates(decoded, encoded, settings, gate=psnr_floor)
    for _ in fates.outcomes:  # the gate keeps the old latent
        res.skip("fidelity gate")
    out = []
    for k, bucket, index in write_latents(arc, encoded, fates.latents, chunk.shards,
                                          lambda *shape: bucket_for(arc, encoded.fingerprint, *shape)):  # Y's own buckets
        row = by_id[decoded.candidates[k]]
        new = replace(row, bucket=bucket, index=index, **encoded.row_fields(k), pixel=None, pixel_sha256=None,
                      reencoded={"from": row.model_fingerprint, "psnr_before": row.psnr,
                                 "psnr_after": encoded.psnr[k], "copy": copies[row.id]})
        arc.read_latent(new)  # the shard as stored: checksum verified before the row points at it
        res.moved_one(row.stored_bytes, new.stored_bytes)
        res.fidelity.append((row.psnr, float(encoded.psnr[k]), copies[row.id]))
        out.append(new)
    return out

