"""One re-tiering move over a chunk of objects, as a Dask task (`retier-<kind>-...`).

Each move writes the new copy, reads it back and checks it, and only then commits the
rows that point at it, as one new catalog batch (never rewriting a row in place). The old
copy stays on the store until `sweep` finds no row referencing it. A row that no longer
qualifies (an earlier, interrupted run already moved it) is skipped, so applying a plan
twice moves every object once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import with_chunks
from lbdask.errors import IntegrityError
from lbdask.image import kept, pngio, pngsamples
from lbdask.latent.decode import row_pixels, to_png
from lbdask.models.row_models import RowModels
from lbdask.representation.batch import Batch, DecodedBatch
from lbdask.representation.encode import encode
from lbdask.representation.fate import decide_candidates, pixel_outcome
from lbdask.representation.settings import JobSettings
from lbdask.representation.shard import write_latents
from lbdask.tiering.plan import demotable

#: Moves that need the resident model on the worker.
MODEL_KINDS = frozenset({"demote", "promote"})


@dataclass
class Chunk:
    """The objects of one task: one kind, one catalog batch; demote chunks share a padded shape."""

    kind: str
    batch_id: str
    ids: list[str]
    padded: tuple[int, int] | None = None
    shards: dict[int, int] = field(default_factory=dict)  # demote: bits -> shard number (driver-allocated)


@dataclass
class MoveContext:
    """Settings every move of one run shares."""

    settings: JobSettings  # the fidelity gate of demote
    demote_floor: float
    convert_effort: int = 7
    source: str | None = None
    quarantine: str | None = None
    day: str = ""  # quarantine folder of this run, YYYYMMDD
    reencode: Any = None  # lbdask.retier.reencode.ReencodeSpec when the run re-encodes


@dataclass
class ChunkResult:
    """What one chunk did (progress bar, run summary)."""

    kind: str
    batch_id: str
    images: int  # objects looked at (the progress bar counts these)
    source_bytes: int = 0  # bytes of the copies moved away from
    moved: int = 0
    bytes_after: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # why -> count
    psnr: list[float] = field(default_factory=list)  # demoted: the new latent's PSNR
    fidelity: list[tuple[float | None, float, str]] = field(default_factory=list)  # re-encoded: PSNR before, after, copy
    already_committed: bool = False

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def moved_one(self, bytes_before: int, bytes_after: int) -> None:
        """Count one object moved from a copy of `bytes_before` to one of `bytes_after`."""
        self.moved += 1
        self.source_bytes += bytes_before
        self.bytes_after += bytes_after


def still_applies(kind: str, row: CatalogRow | None, ctx: MoveContext) -> bool:
    """Whether `row` is still in the state the move starts from."""
    if row is None:
        return False
    if kind == "demote":
        return demotable(row, ctx.demote_floor) and row.original is not None
    if kind == "convert":
        return row.status == "kept" and row.kept_format in (None, "png") and row.kept_note is None and row.original is not None
    if kind == "promote":
        return row.status in ("latent", "lossy") and row.pixel is None
    if kind == "unpromote":
        return row.pixel is not None
    if kind == "reencode":
        return row.status == "latent" and row.model_fingerprint == ctx.reencode.from_fingerprint
    return True


def check_copy(arc: Archive, row: CatalogRow) -> None:
    """Read the archive's own copy of `row` and check its checksum (IntegrityError if bad)."""
    if row.status == "latent":
        arc.read_latent(row)
    else:
        arc.read_original(row)


def demote(arc: Archive, rows: list[CatalogRow], chunk: Chunk, ctx: MoveContext, res: ChunkResult) -> list[CatalogRow]:
    """Kept copies -> latents, through the core's encode and representation chooser (lbdask.representation)."""
    decoded = DecodedBatch(Batch(chunk.batch_id, [], padded=chunk.padded, shards=chunk.shards), {}, {}, {})
    by_id = {}
    for row in rows:
        raw = arc.read_original(row)
        rgb, alpha = pngio.decode(kept.read_back(row, raw), ctx.settings.bomb_pixels)
        if (outcome := pixel_outcome(alpha)) is not None:
            res.skip(outcome.reason)
            continue
        decoded.candidates.append(row.id)
        decoded.images.append(rgb)
        decoded.kept[row.id] = kept.KeptObject(row.kept_format or "png", raw)
        by_id[row.id] = row
    encoded = encode(decoded, ctx.settings)
    fates = decide_candidates(decoded, encoded, ctx.settings)
    out = []
    for image_id in fates.outcomes:  # the gate keeps the copy: remember the floor, so the next run does not try again
        res.skip("fidelity gate")
        psnr = encoded.psnr[decoded.candidates.index(image_id)]
        out.append(replace(by_id[image_id], demote_floor=ctx.demote_floor, psnr=psnr))
    for k, bucket, index in write_latents(arc, encoded, fates.latents, chunk.shards, arc.bucket_name):
        row = by_id[decoded.candidates[k]]
        new = replace(row, status="latent", reason=None, bucket=bucket, index=index, **encoded.row_fields(k),
                      original=None, kept_format=None, kept_note=None, stored_sha256=None, demote_floor=None)
        arc.read_latent(new)  # the shard as stored: checksum verified before the row points at it
        res.moved_one(row.stored_bytes, new.stored_bytes)
        res.psnr.append(float(encoded.psnr[k]))
        out.append(new)
    return out


def convert(arc: Archive, rows: list[CatalogRow], chunk: Chunk, ctx: MoveContext, res: ChunkResult) -> list[CatalogRow]:
    """Kept PNGs -> lossless JPEG XL (lbdask.image.kept), each checked pixel-exact from the store."""
    out, objs, sources = [], {}, {}
    for row in rows:
        raw = arc.read_original(row)
        obj = kept.encode_kept(raw, "jxl", ctx.convert_effort, ctx.settings.max_pixels)
        if obj.format == "jxl":
            objs[row.id], sources[row.id] = obj, raw
        else:  # the note says why; the plan skips rows with a note from now on
            res.skip("jxl not used")
            out.append(replace(row, kept_format="png", kept_note=obj.note))
    if objs:
        refs = arc.put_originals(chunk.batch_id, {i: o.data for i, o in objs.items()})
        for row in rows:
            if row.id not in objs:
                continue
            obj = objs[row.id]
            new = replace(row, original=refs[row.id], kept_format="jxl", kept_note=None, stored_bytes=len(obj.data),
                          stored_sha256=hashlib.sha256(obj.data).hexdigest(), decode_sha256=obj.pixels_sha256)
            back = kept.read_back(new, arc.read_original(new))
            why = kept.mismatch(pngsamples.samples(sources[row.id]), back)
            if why is not None:
                raise IntegrityError(f"jxl copy of {row.id!r} as stored is not pixel-exact: {why}")
            res.moved_one(row.stored_bytes, new.stored_bytes)
            out.append(new)
    return out


def promote(arc: Archive, rows: list[CatalogRow], chunk: Chunk, ctx: MoveContext, res: ChunkResult) -> list[CatalogRow]:
    """Latent / lossy rows -> also the PNG a reader gets, in the pixel tier (`pixels/`)."""
    pngs = {}
    latent = [r for r in rows if r.status == "latent"]
    if latent:
        from lbdask.models.resident import resident_model

        with resident_model().use() as model:
            arc.check_model(model.fingerprint, model.name)
            # re-encoded rows decode with their own model (loaded from the archive's model table)
            models = RowModels(arc, lambda: model, precision=ctx.settings.precision, runtime=ctx.settings.runtime)
            for row in latent:
                pngs[row.id] = to_png(row_pixels(arc, models.for_row(row), row), with_chunks(arc, row))
    for row in rows:
        if row.status != "latent":
            pngs[row.id] = kept.read_back(with_chunks(arc, row), arc.read_original(row))
    refs = arc.put_originals(chunk.batch_id, pngs, folder="pixels")
    out = []
    for row in rows:
        new = replace(row, pixel=refs[row.id], pixel_sha256=hashlib.sha256(pngs[row.id]).hexdigest())
        if arc.read_pixels(new) != pngs[row.id]:
            raise IntegrityError(f"pixel copy of {row.id!r} differs as stored")
        res.moved += 1
        res.bytes_after += len(pngs[row.id])
        out.append(new)
    return out


def unpromote(arc: Archive, rows: list[CatalogRow], chunk: Chunk, ctx: MoveContext, res: ChunkResult) -> list[CatalogRow]:
    """Drop pixel-tier copies of cold objects, once their own copy has been read and checked."""
    out = []
    for row in rows:
        check_copy(arc, row)
        res.moved += 1
        res.source_bytes += row.pixel.size
        out.append(replace(row, pixel=None, pixel_sha256=None))
    return out

