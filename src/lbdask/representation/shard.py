"""Writing a decided batch: its latents into fresh shards, its copies into one originals
object, then its rows in one commit (migration's `write-shard` task; the commit first moves
their large PNG metadata into one `meta/` object, lbdask.archive.meta).

What each image becomes is decided in `fate`; this module does the I/O. Re-tiering's moves
write their latents through `write_latents` too, and open the archive on a worker through
`open_archive`.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from distributed.metrics import context_meter

from lbdask.archive import Archive, CatalogRow, OriginalRef
from lbdask.archive.summary import by_representation
from lbdask.representation.batch import Batch, BatchResult, DecodedBatch, EncodedBatch, Outcome
from lbdask.representation.fate import CandidateFates, decide_candidates
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import SourceItem


@functools.lru_cache(maxsize=8)
def _archive(dest: str, options_json: str) -> Archive:
    return Archive.open(dest, mode="a", storage_options=json.loads(options_json) or None)


def open_archive(dest: str, storage_options: dict[str, Any]) -> Archive:
    """The worker's cached handle on the archive (one per destination and options)."""
    return _archive(dest, json.dumps(storage_options, sort_keys=True))


def write_shard(dest_url: str, storage_options: dict[str, Any], decoded: DecodedBatch,
                encoded: EncodedBatch | None, settings: JobSettings) -> BatchResult:
    """Write latents and kept originals of the batch, then commit its rows in one object."""
    batch = decoded.batch
    arc = open_archive(dest_url, storage_options)
    if arc.is_committed(batch.batch_id):
        return BatchResult(batch.batch_id, len(batch.items), batch.source_bytes, {}, {}, {}, [], already_committed=True)
    fates = decide_candidates(decoded, encoded, settings) if encoded is not None else CandidateFates()
    items = {i.id: i for i in batch.items}
    rows: dict[str, CatalogRow] = {}
    for k, bucket, index in write_latents(arc, encoded, fates.latents, batch.shards, arc.bucket_name):
        image_id = decoded.candidates[k]
        rows[image_id] = _row(items[image_id], decoded, "latent", None, batch.batch_id, bucket=bucket, index=index,
                              **encoded.row_fields(k))
    rows.update(write_copies(arc, decoded, encoded, {**decoded.outcomes, **fates.outcomes}, items))
    with context_meter.meter("commit"):
        arc.commit(batch.batch_id, [rows[i.id] for i in batch.items])
    return batch_result(batch, rows.values(), encoded)


def write_latents(arc: Archive, encoded: EncodedBatch, latents: dict[int, list[int]], shards: dict[int, int],
                  bucket: Callable[..., str]) -> Iterator[tuple[int, str, int]]:
    """Write the latents of each precision (`latents`: bits -> candidate indices) into its shard
    (`shards`: bits -> shard number) of bucket `bucket(bits, c, h, w)`; yields (k, bucket, index)."""
    for bits, members in sorted(latents.items()):
        name = bucket(bits, *encoded.latents[members[0]].data.shape)
        with context_meter.meter("write-shard"):
            indices = arc.write_shard(name, shards[bits], [encoded.latents[k] for k in members])
        for k, index in zip(members, indices):
            yield k, name, index


def stored_copies(decoded: DecodedBatch, outcomes: dict[str, Outcome]) -> dict[str, bytes]:
    """The bytes stored for images that are not latents: kept copies (the PNG itself, or its
    lossless jxl), lossy JPEG XL or AVIF, and the raw bytes of failed inputs (byte-identical, checked
    against source_sha256 on read)."""
    stored = {i: decoded.kept[i].data for i, o in outcomes.items() if o.status == "kept"}
    stored.update({i: decoded.lossy[i].data for i, o in outcomes.items() if o.status == "lossy"})
    stored.update({i: decoded.originals[i] for i, o in outcomes.items() if o.status == "failed" and i in decoded.originals})
    return stored


def write_copies(arc: Archive, decoded: DecodedBatch, encoded: EncodedBatch | None, outcomes: dict[str, Outcome],
                 items: dict[str, SourceItem]) -> dict[str, CatalogRow]:
    """Store the copies of the batch's images that are not latents in one object; their rows."""
    stored = stored_copies(decoded, outcomes)
    refs: dict[str, OriginalRef] = {}
    if stored:
        with context_meter.meter("write-originals"):
            refs = arc.put_originals(decoded.batch.batch_id, stored)
    return {image_id: _row(items[image_id], decoded, outcome.status, outcome.reason, decoded.batch.batch_id,
                           **_copy_fields(image_id, outcome, decoded, encoded, stored, refs))
            for image_id, outcome in outcomes.items()}


def _copy_fields(image_id: str, outcome: Outcome, decoded: DecodedBatch, encoded: EncodedBatch | None,
                 stored: dict[str, bytes], refs: dict[str, OriginalRef]) -> dict[str, Any]:
    """The catalog fields of one image stored as a copy (or, refused, not stored at all)."""
    extra: dict[str, Any] = {}
    if image_id in stored:
        extra = {"original": refs[image_id], "stored_bytes": len(stored[image_id])}
        if outcome.status == "lossy" or (outcome.status == "kept" and decoded.kept[image_id].format != "png"):  # not the source's bytes
            extra["stored_sha256"] = hashlib.sha256(stored[image_id]).hexdigest()
    if outcome.status == "kept":
        obj = decoded.kept[image_id]
        extra.update(kept_format=obj.format, kept_note=obj.note, decode_sha256=obj.pixels_sha256)
        if image_id in decoded.candidates:  # measured, then kept: record what the latent would have given
            k = decoded.candidates.index(image_id)
            extra.update(psnr=encoded.psnr[k], psnr_initial=encoded.psnr_initial[k], refine_steps=encoded.refine_steps[k])
    elif outcome.status == "lossy":
        lossy = decoded.lossy[image_id]
        extra.update(kept_format=lossy.format, lossy_distance=lossy.distance, psnr=lossy.psnr, decode_sha256=lossy.decode_sha256)
        if lossy.format == "avif":
            extra.update(lossy_quality=lossy.quality, lossy_bits=lossy.bits)
    return extra


def batch_result(batch: Batch, rows: Iterable[CatalogRow], encoded: EncodedBatch | None) -> BatchResult:
    """What the committed batch did (progress bar, job statistics)."""
    rows = list(rows)
    latent = [r for r in rows if r.status == "latent"]
    return BatchResult(
        batch.batch_id, len(batch.items), batch.source_bytes, dict(Counter(r.status for r in rows)),
        by_representation(rows),
        dict(Counter(f"{r.status}:{r.reason}" for r in rows if r.status != "latent")),
        [r.psnr for r in latent], [r.psnr_initial for r in latent if r.psnr_initial is not None],
        encoded.seconds if encoded else 0.0, encoded.refine_seconds if encoded else 0.0,
        psnr_lossy=[r.psnr for r in rows if r.status == "lossy"],
    )


def _row(item: SourceItem, decoded: DecodedBatch, status: str, reason: str | None, batch_id: str, **fields: Any) -> CatalogRow:
    # Size and sha256 of the bytes this batch read and stored, not of the scan's earlier
    # read: a file that changed in between must still match its kept original.
    data = decoded.originals.get(item.id)
    size, sha = (item.size, item.sha256) if data is None else (len(data), hashlib.sha256(data).hexdigest())
    return CatalogRow(
        id=item.id, status=status, reason=reason, source_size=size, source_sha256=sha, source_stamp=item.stamp,
        width=item.width, height=item.height, mode=item.mode, chunks=[tuple(c) for c in decoded.chunks.get(item.id, [])],
        batch_id=batch_id, **fields,
    )
