"""Rows for the 1M / 10M catalog builds (issue 25): index rows exactly as `Archive.commit` leaves
them, without writing the PNG metadata of every row again.

`Archive.commit` moves each row's text chunks (median 6.8 KB, the shared corpus) into
`meta/<batch>.bin` and keeps a `ChunksRef` in the row: 10M rows would write ~70 GB of `meta/`
that no catalog figure reads. With `--shared-meta`, `catalog_scale.py` writes the corpus sample's
chunks once (`meta/bench-sample.bin`, framed as `lbdask.archive.meta` frames them) and each row
references its sample's entry: the index rows have the same fields, sizes and sha256s as
committed ones (the key differs in length by a few bytes), and `read` of such a row still
rebuilds its chunks byte for byte. Rows come straight as `CatalogRow`s (no JSON round trip).
"""
from __future__ import annotations

import hashlib
import random

from catalog_rows import Chunks, image_id

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import frame
from lbdask.archive.objects import put_atomic
from lbdask.archive.rows import ChunksRef, OriginalRef

SAMPLE_KEY = "meta/bench-sample.bin"


def write_sample(arc: Archive, sample: list[Chunks]) -> list[ChunksRef]:
    """Write every sample's framed chunks into one object; a reference to each."""
    refs, parts, offset = [], [], 0
    for chunks in sample:
        blob = frame(chunks)
        refs.append(ChunksRef(SAMPLE_KEY, offset, len(blob), hashlib.sha256(blob).hexdigest(), tuple(t for t, _ in chunks)))
        parts.append(blob)
        offset += len(blob)
    put_atomic(arc.loc, arc.loc.path(SAMPLE_KEY), b"".join(parts))
    return refs


def kept_row(i: int, refs: list[ChunksRef], batch: str) -> CatalogRow:
    """Kept row i as `catalog_rows.row_dict` draws it, its chunks already in `meta/`."""
    rng = random.Random(i)
    ref = refs[rng.randrange(len(refs))]
    size = rng.randrange(2_000, 40_000)
    return CatalogRow(
        id=image_id(i), status="kept", reason="min-side", source_size=size,
        source_sha256=hashlib.sha256(image_id(i).encode()).hexdigest(),
        source_stamp=f"mtime:{1_700_000_000_000_000_000 + i}", width=rng.randrange(16, 65),
        height=rng.randrange(16, 65), mode="RGB", stored_bytes=size, chunks_ref=ref,
        original=OriginalRef(f"originals/{batch}.bin", rng.randrange(0, 300_000), size),
        batch_id=batch, kept_format="png")
