"""Synthetic catalogs built straight through the catalog API (`Archive.commit` + `compact`): rows
shaped like a migration's (latent and kept, with a text chunk), no objects behind them. What the
commands that only read the catalog (ls, report, stats, verify's sampling, retier planning) need."""
from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from lbdask.archive import Archive, CatalogRow
from tests.support.archive import MODEL

PROMPT = b"parameters\x00" + b"a photo of a cat on a mat, 35mm, golden hour, " * 6


def synthetic_row(n: int) -> CatalogRow:
    """Row `n`: three in four latent, the rest kept PNGs; ids not in commit order."""
    image_id = f"dir{n % 97:02d}/img-{(n * 7919) % 1_000_003:07d}-{n}.png"
    common = {"id": image_id, "source_size": 50_000 + n % 1000, "source_sha256": f"{n:064x}", "width": 512,
              "height": 512, "mode": "RGB", "chunks": [("tEXt", PROMPT)], "stored_bytes": 9_000 + n % 500}
    if n % 4 == 3:
        return CatalogRow(status="kept", reason="fidelity", **common)
    return CatalogRow(status="latent", bucket="b8-c4-64x64", index=n, bits=8, lo=[-1.0] * 4, hi=[1.0] * 4,
                      checksum=f"{n:016x}", psnr=30.0 + n % 17, model_fingerprint=MODEL["fingerprint"], **common)


def synthetic_archive(dest: str, rows: int, batch: int = 2000) -> Archive:
    """An archive whose catalog holds `rows` synthetic rows, committed in batches and compacted."""
    arc = Archive.create(dest, MODEL)
    for start in range(0, rows, batch):
        arc.commit(f"b{start:09d}", [synthetic_row(n) for n in range(start, min(rows, start + batch))])
    arc.compact()
    return arc


def peak_bytes(call: Callable[[], object]) -> int:
    """The peak of Python's allocations (tracemalloc) while `call` runs, above what was held before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
