"""Migration's read task, `read-png` (CPU: fetch, probe, decode, and the kept-format and
lossy copies the chooser weighs).

The batch's other tasks are the core's: `encode` (lbdask.representation.encode: the
resident model) and `write-shard` (lbdask.representation.shard: pcodec shard write, kept
originals and the raw bytes of failed inputs, atomic commit). Separate tasks let Dask
overlap PNG decoding and shard writing of neighbouring batches with the encode.
"""
from __future__ import annotations

from typing import Any

from distributed.metrics import context_meter

from lbdask.errors import InputError
from lbdask.image import pngio
from lbdask.image.kept import encode_kept, search_fallback
from lbdask.representation.batch import Batch, DecodedBatch
from lbdask.representation.fate import pixel_outcome, undecodable, unreadable
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import read_sources
from lbdask.storage import open_location


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
            outcomes[item.id] = unreadable(data)
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
            outcomes[item.id] = undecodable(exc)
            continue
        if (outcome := pixel_outcome(alpha)) is not None:
            outcomes[item.id] = outcome
            continue
        decoded.candidates.append(item.id)
        decoded.images.append(rgb)
    add_kept_copies(decoded, settings)
    return decoded


def add_kept_copies(decoded: DecodedBatch, settings: JobSettings) -> None:
    """The kept-format copy of every readable item, and the lossy search for candidates.

    Done before the encode, on the CPU threads, so the chooser (`lbdask.representation.fate`) can weigh
    every representation; each jxl copy has been decoded and compared with its source.
    """
    with context_meter.meter("kept-format"):
        for image_id, data in decoded.originals.items():
            outcome = decoded.outcomes.get(image_id)
            if outcome is None or outcome.status != "failed":
                decoded.kept[image_id] = encode_kept(data, settings.kept_format, settings.jxl_effort, settings.max_pixels)
    if settings.lossy_fallback != "off":
        with context_meter.meter("lossy-search"):
            for image_id, rgb in zip(decoded.candidates, decoded.images):
                found = search_fallback(rgb, settings.lossy_fallback, settings.min_psnr, settings.lossy_jxl_effort,
                                        settings.lossy_avif_speed)
                if found is not None:
                    decoded.lossy[image_id] = found
