"""The three tasks of a batch, as the Dask dashboard names them.

`read-png` (CPU: fetch, probe, decode, pad), `encode` (the resident model: encode,
optional refinement and precision choice, quantise, decode again, PSNR) and
`write-shard` (pcodec shard write, kept originals and the raw bytes of failed inputs,
atomic commit). Separate tasks let
Dask overlap PNG decoding and shard writing of neighbouring batches with the encode.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from distributed.metrics import context_meter

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.summary import by_representation
from lbdask.cluster.settings import JobSettings
from lbdask.errors import InputError
from lbdask.fidelity.chooser import Option, choose
from lbdask.image import pngio
from lbdask.image.kept import KeptObject, LossyObject, encode_kept, search_lossy
from lbdask.image.quality import psnr
from lbdask.latent.codec import EncodedLatent, LatentCodec, compressed_size
from lbdask.latent.decode import decode_latent, decode_sha256
from lbdask.latent.refine import choose_bits_decoded, refine_latents
from lbdask.migrate.plan import KEEP_NO_SAVING, KEEP_TRANSPARENCY, LOSSY_SMALLER, Batch, Outcome, post_encode_outcome
from lbdask.migrate.scan import SourceItem, read_sources
from lbdask.models.resident import resident_model
from lbdask.storage import open_location

#: Precision the refinement optimises for when `latent_bits` is auto (then chosen per image).
AUTO_REFINE_BITS = 8


@dataclass
class DecodedBatch:
    """A batch after `read-png`: source bytes, chunks, decisions and the images to encode."""

    batch: Batch
    originals: dict[str, bytes]            # source bytes of every readable item (kept and failed copies come from here)
    chunks: dict[str, list[pngio.PngChunk]]
    outcomes: dict[str, Outcome]           # keep/fail decisions made so far
    candidates: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # uint8 (h, w, 3) per candidate, unpadded
    kept: dict[str, KeptObject] = field(default_factory=dict)  # the kept-format copy of every readable item
    lossy: dict[str, LossyObject] = field(default_factory=dict)  # candidates with a passing lossy JPEG XL


@dataclass
class EncodedBatch:
    """Per-candidate latents and their measured fidelity after `encode`."""

    latents: list[EncodedLatent]
    stored_bytes: list[int]                # pcodec bytes of each latent, as its shard stores it
    psnr: list[float]
    psnr_initial: list[float | None]
    refine_steps: list[int]
    decode_sha256: list[str]
    device_class: str
    fingerprint: str
    seconds: float
    refine_seconds: float


@dataclass
class BatchResult:
    """What one committed batch did, for the progress bar and the job statistics."""

    batch_id: str
    images: int
    source_bytes: int
    status_counts: dict[str, int]
    representations: dict[str, dict[str, int]]  # representation -> images, source and stored bytes (summary.by_representation)
    reasons: dict[str, int]                # "kept:<reason>" / "failed:<reason>" -> count
    psnr: list[float]                      # latent images only
    psnr_initial: list[float] = field(default_factory=list)  # latent images that were refined
    encode_seconds: float = 0.0
    refine_seconds: float = 0.0
    already_committed: bool = False
    psnr_lossy: list[float] = field(default_factory=list)  # lossy JPEG XL images


@functools.lru_cache(maxsize=8)
def _archive(dest: str, options_json: str) -> Archive:
    return Archive.open(dest, mode="a", storage_options=json.loads(options_json) or None)


def open_archive(dest: str, storage_options: dict[str, Any]) -> Archive:
    """The worker's cached handle on the archive (one per destination and options)."""
    return _archive(dest, json.dumps(storage_options, sort_keys=True))


def _pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Edge-pad bottom/right to the bucket shape (what the model does for a single size)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, shape[0] - h), (0, shape[1] - w), (0, 0)), mode="edge")


def read_png(src_url: str, storage_options: dict[str, Any], batch: Batch, settings: JobSettings) -> DecodedBatch:
    """Fetch the batch's source files, keep their chunks, decode the latent candidates."""
    outcomes = dict(batch.outcomes)
    wanted = [i.id for i in batch.items if not (i.id in outcomes and outcomes[i.id].status == "refused")]
    with context_meter.meter("fetch-source"):
        fetched = read_sources(open_location(src_url, storage_options), wanted)
    decoded = DecodedBatch(batch, {}, {}, outcomes)
    for item in batch.items:
        data = fetched.get(item.id)
        if data is None:
            continue
        if isinstance(data, Exception):
            outcomes[item.id] = Outcome("refused", f"unreadable: {data}")
            continue
        decoded.originals[item.id] = data
        if item.id in outcomes and outcomes[item.id].status == "failed":
            continue  # its raw bytes are stored as they are
        try:
            with context_meter.meter("probe-png"):
                decoded.chunks[item.id] = list(pngio.probe(data).chunks)
            if item.id in outcomes:
                continue
            with context_meter.meter("decode-png"):
                rgb, alpha = pngio.decode(data, settings.bomb_pixels)
        except InputError as exc:
            outcomes[item.id] = Outcome("failed", str(exc))
            continue
        if alpha is not None and alpha.min() < 255:
            outcomes[item.id] = Outcome("kept", KEEP_TRANSPARENCY)
            continue
        decoded.candidates.append(item.id)
        decoded.images.append(rgb)
    add_kept_copies(decoded, settings)
    return decoded


def add_kept_copies(decoded: DecodedBatch, settings: JobSettings) -> None:
    """The kept-format copy of every readable item, and the lossy search for candidates.

    Done before the encode, on the CPU threads, so the chooser in `write_shard` can weigh
    every representation; each jxl copy has been decoded and compared with its source.
    """
    with context_meter.meter("kept-format"):
        for image_id, data in decoded.originals.items():
            outcome = decoded.outcomes.get(image_id)
            if outcome is None or outcome.status != "failed":
                decoded.kept[image_id] = encode_kept(data, settings.kept_format, settings.jxl_effort, settings.max_pixels)
    if settings.lossy_fallback == "jxl":
        with context_meter.meter("lossy-search"):
            for image_id, rgb in zip(decoded.candidates, decoded.images):
                found = search_lossy(rgb, settings.min_psnr, settings.lossy_jxl_effort)
                if found is not None:
                    decoded.lossy[image_id] = found


def encode(decoded: DecodedBatch, settings: JobSettings) -> EncodedBatch | None:
    """Encode the candidates with the resident model and measure the stored round trip."""
    if not decoded.images:
        return None
    padded_h, padded_w = decoded.batch.padded
    with resident_model().use(padded_h * padded_w) as model:
        return encode_with(model, decoded, settings)


def encode_with(model: Any, decoded: DecodedBatch, settings: JobSettings) -> EncodedBatch:
    """`encode` with a given model (held exclusively by the caller): lbdask retier re-encode."""
    images = decoded.images
    n = len(images)
    started = time.perf_counter()
    with context_meter.meter("vae-encode"):
        z = model.encode(np.stack([_pad(im, decoded.batch.padded) for im in images]))
    psnr_initial: list[float | None] = [None] * n
    steps = [0] * n
    refine_seconds = 0.0
    fixed_bits = settings.latent_bits if settings.latent_bits != "auto" else None
    if settings.refine_steps > 0:
        with context_meter.meter("refine"):
            result = refine_latents(model, LatentCodec(fixed_bits or AUTO_REFINE_BITS), images, z,
                                    settings.refine_steps, settings.target_psnr)
        z = result.z
        refine_seconds = result.seconds
        psnr_initial = [float(p) for p in result.psnr_initial]
        steps = [int(s) for s in result.steps_taken]
    measured: list[np.ndarray | None] = [None] * n
    if fixed_bits is None:
        with context_meter.meter("choose-bits"):
            bits, measured = choose_bits_decoded(model, images, z, settings.min_psnr)
        if model.micro_batch != 1:  # decoded in batches: not the canonical batch-of-one pixels
            measured = [None] * n
    else:
        bits = [fixed_bits] * n
    with context_meter.meter("quantise"):
        latents = [LatentCodec(b).encode(z[i]) for i, b in enumerate(bits)]
        stored = np.stack([LatentCodec(enc.bits).decode(enc) for enc in latents])
    with context_meter.meter("pcodec-size"):
        sizes = [compressed_size(enc.data) for enc in latents]
    with context_meter.meter("verify-decode"):
        # One image at a time, as `lbdask read` decodes: the recorded PSNR and decode
        # hash then describe exactly the pixels a reader gets on this device class.
        # choose-bits already decoded the chosen latents alone: those pixels are reused
        back = [measured[i] if measured[i] is not None else decode_latent(model, stored[i], im.shape[:2])
                for i, im in enumerate(images)]
    seconds = time.perf_counter() - started
    scores = [float(psnr(im, dec)) for im, dec in zip(images, back)]
    return EncodedBatch(latents, sizes, scores, psnr_initial, steps, [decode_sha256(d) for d in back],
                        model.device_class, model.fingerprint, seconds, refine_seconds)


def write_shard(dest_url: str, storage_options: dict[str, Any], decoded: DecodedBatch,
                encoded: EncodedBatch | None, settings: JobSettings) -> BatchResult:
    """Write latents and kept originals of the batch, then commit its rows in one object."""
    batch = decoded.batch
    arc = open_archive(dest_url, storage_options)
    if arc.is_committed(batch.batch_id):
        return BatchResult(batch.batch_id, len(batch.items), batch.source_bytes, {}, {}, {}, [], already_committed=True)
    outcomes = dict(decoded.outcomes)
    rows: dict[str, CatalogRow] = {}
    by_bits: dict[int, list[int]] = {}
    items = {i.id: i for i in batch.items}
    if encoded is not None:
        for k, image_id in enumerate(decoded.candidates):
            status = choose_representation(decoded, encoded, k, settings)
            if status is None:
                by_bits.setdefault(encoded.latents[k].bits, []).append(k)
            else:
                outcomes[image_id] = status
    for bits, members in sorted(by_bits.items()):
        bucket = arc.bucket_name(bits, *encoded.latents[members[0]].data.shape)
        with context_meter.meter("write-shard"):
            indices = arc.write_shard(bucket, batch.shards[bits], [encoded.latents[k] for k in members])
        for k, index in zip(members, indices):
            image_id, enc = decoded.candidates[k], encoded.latents[k]
            rows[image_id] = _row(items[image_id], decoded, "latent", None, batch.batch_id,
                                  bucket=bucket, index=index, psnr=encoded.psnr[k], psnr_initial=encoded.psnr_initial[k],
                                  refine_steps=encoded.refine_steps[k], model_fingerprint=encoded.fingerprint,
                                  bits=enc.bits, lo=enc.lo, hi=enc.hi, checksum=enc.checksum, stored_bytes=encoded.stored_bytes[k],
                                  decode_sha256=encoded.decode_sha256[k], device_class=encoded.device_class)
    # kept copies (the PNG itself, or its lossless jxl), lossy JPEG XL, and the raw bytes of
    # failed inputs (byte-identical, checked against source_sha256 on read)
    kept = {i: decoded.kept[i].data for i, o in outcomes.items() if o.status == "kept"}
    kept.update({i: decoded.lossy[i].data for i, o in outcomes.items() if o.status == "lossy"})
    kept.update({i: decoded.originals[i] for i, o in outcomes.items() if o.status == "failed" and i in decoded.originals})
    refs = {}
    if kept:
        with context_meter.meter("write-originals"):
            refs = arc.put_originals(batch.batch_id, kept)
    for image_id, outcome in outcomes.items():
        extra = {}
        if image_id in kept:
            extra = {"original": refs[image_id], "stored_bytes": len(kept[image_id])}
            if outcome.status == "lossy" or (outcome.status == "kept" and decoded.kept[image_id].format != "png"):  # not the source's bytes
                extra["stored_sha256"] = hashlib.sha256(kept[image_id]).hexdigest()
        if outcome.status == "kept":
            obj = decoded.kept[image_id]
            extra.update(kept_format=obj.format, kept_note=obj.note, decode_sha256=obj.pixels_sha256)
            if image_id in decoded.candidates:  # measured, then kept: record what the latent would have given
                k = decoded.candidates.index(image_id)
                extra.update(psnr=encoded.psnr[k], psnr_initial=encoded.psnr_initial[k], refine_steps=encoded.refine_steps[k])
        elif outcome.status == "lossy":
            lossy = decoded.lossy[image_id]
            extra.update(kept_format="jxl", lossy_distance=lossy.distance, psnr=lossy.psnr, decode_sha256=lossy.decode_sha256)
        rows[image_id] = _row(items[image_id], decoded, outcome.status, outcome.reason, batch.batch_id, **extra)
    with context_meter.meter("commit"):
        arc.commit(batch.batch_id, [rows[i.id] for i in batch.items])
    latent = [r for r in rows.values() if r.status == "latent"]
    return BatchResult(
        batch.batch_id, len(batch.items), batch.source_bytes, dict(Counter(r.status for r in rows.values())),
        by_representation(rows.values()),
        dict(Counter(f"{r.status}:{r.reason}" for r in rows.values() if r.status != "latent")),
        [r.psnr for r in latent], [r.psnr_initial for r in latent if r.psnr_initial is not None],
        encoded.seconds if encoded else 0.0, encoded.refine_seconds if encoded else 0.0,
        psnr_lossy=[r.psnr for r in rows.values() if r.status == "lossy"],
    )


def choose_representation(decoded: DecodedBatch, encoded: EncodedBatch, k: int, settings: JobSettings) -> Outcome | None:
    """Candidate `k`'s outcome by `lbdask.fidelity.chooser`: None for the latent, else kept / lossy with the reason."""
    image_id = decoded.candidates[k]
    copy = decoded.kept[image_id]
    options = [Option(copy.format, len(copy.data)), Option("latent", encoded.stored_bytes[k], encoded.psnr[k])]
    lossy = decoded.lossy.get(image_id)
    if lossy is not None:
        options.append(Option("jxl-lossy", len(lossy.data), lossy.psnr))
    winner = choose(options, settings.min_psnr, settings.max_latent_ratio)
    if winner.representation == "latent":
        return None
    why = post_encode_outcome(encoded.psnr[k], encoded.stored_bytes[k], len(copy.data), settings)
    if winner.representation == "jxl-lossy":
        return Outcome("lossy", why.reason if why else LOSSY_SMALLER)
    return Outcome("kept", why.reason if why else KEEP_NO_SAVING)


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
