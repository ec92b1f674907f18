"""Catalog rows shaped like real ones, for the catalog benchmarks (stdlib only).

`catalog_scale.py` measures the ancillary chunks of the shared corpus's AI PNGs with
`lbdask.image.pngio.probe` and saves them (`save_chunks`); both it and `catalog_engines.py`
(which runs in a venv without lbdask's dependencies) build rows from that sample here, so
every engine stores the same rows. A row is a kept PNG (`--min-side 65`: the catalog
dominates) carrying the text chunks of one corpus image drawn at random, so the chunk
sizes follow the corpus's distribution (median 6.8 KB per image). `moved_out` gives a row as
catalog v2 indexes it: the chunks replaced by a reference into the batch's `meta/` object.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

Chunks = list[tuple[str, bytes]]


def save_chunks(path: str, sample: list[Chunks]) -> None:
    """Write one chunk list per corpus image as JSON (bytes base64)."""
    data = [[[t, base64.b64encode(d).decode("ascii")] for t, d in chunks] for chunks in sample]
    with open(path, "w") as f:
        json.dump(data, f)


def load_chunks(path: str) -> list[Chunks]:
    with open(path) as f:
        return [[(t, base64.b64decode(d)) for t, d in chunks] for chunks in json.load(f)]


def image_id(i: int) -> str:
    """Ids like a migration's: relative source paths, spread over folders."""
    return f"d{i % 997:03d}/img{i:09d}.png"


def row_dict(i: int, sample: list[Chunks], batch: str) -> dict[str, Any]:
    """The JSON form (`CatalogRow.to_json`) of kept row i: deterministic per i."""
    rng = random.Random(i)
    chunks = sample[rng.randrange(len(sample))]
    size = rng.randrange(2_000, 40_000)
    digest = hashlib.sha256(image_id(i).encode()).hexdigest()
    return {
        "id": image_id(i), "status": "kept", "reason": "min-side", "bucket": None, "index": None,
        "source_size": size, "source_sha256": digest, "source_stamp": f"mtime:{1_700_000_000_000_000_000 + i}",
        "width": rng.randrange(16, 65), "height": rng.randrange(16, 65), "mode": "RGB", "psnr": None,
        "psnr_initial": None, "refine_steps": 0, "model_fingerprint": None, "bits": None, "lo": None, "hi": None,
        "checksum": None, "stored_bytes": size,
        "chunks": [[t, base64.b64encode(d).decode("ascii")] for t, d in chunks],
        "original": {"key": f"originals/{batch}.bin", "offset": rng.randrange(0, 300_000), "size": size},
        "device_class": None, "decode_sha256": None, "batch_id": batch, "kept_format": "png", "kept_note": None,
        "stored_sha256": None, "lossy_distance": None,
        "lossy_quality": None, "lossy_bits": None, "pixel": None, "pixel_sha256": None, "demote_floor": None,
        "reencoded": None,
    }


def moved_out(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as catalog v2 indexes it (`lbdask.archive.meta.offload`): no inline chunks, a
    `chunks_ref` (key, offset, size of the chunks as a PNG frames them, their sha256, types)."""
    chunks = [(t, base64.b64decode(d)) for t, d in row["chunks"]]
    framed = sum(12 + len(d) for _, d in chunks)
    digest = hashlib.sha256(b"".join(d for _, d in chunks)).hexdigest()
    ref = {"key": f"meta/{row['batch_id']}.bin", "offset": row["original"]["offset"], "size": framed,
           "sha256": digest, "types": [t for t, _ in chunks]}
    return {**row, "chunks": [], "chunks_ref": ref}


def row_bytes(row: dict[str, Any]) -> bytes:
    """One row as the catalog serialises it (one JSON line, before gzip)."""
    return json.dumps(row, separators=(",", ":")).encode("utf-8")
