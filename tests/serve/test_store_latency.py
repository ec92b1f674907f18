"""The object-store latency benchmarks and tests inject as a fetch hook: first byte + stored bytes / rate."""
from __future__ import annotations

import contextlib
import time

import pytest

from lbdask.archive import Archive
from lbdask.serve.settings import ServeSettings
from lbdask.serve.store_latency import StoreLatency
from lbdask.serve.worker import ServingWorker
from tests.support.serve import build_serving_archive


def test_first_byte_plus_transfer():
    assert StoreLatency(100, 2.0).seconds(1_000_000) == pytest.approx(0.6)
    assert StoreLatency(100).seconds(10**9) == pytest.approx(0.1)   # no rate: no transfer
    assert StoreLatency().seconds(10**9) == 0.0


def test_negative_rate_is_refused():
    with pytest.raises(ValueError, match="mb_per_s"):
        StoreLatency(mb_per_s=-1)


def test_fetch_waits_for_the_stored_bytes(tmp_path, taef2_dir):
    from lbdask.models import load_model

    dest = str(tmp_path / "arc")
    build_serving_archive(dest, load_model("taef2", weights=taef2_dir, device="cpu"), n=1)
    rows = {i: Archive.open(dest).get_row(i) for i in ("g/000.png", "kept.png")}
    rate = rows["g/000.png"].stored_bytes / 0.4e6            # the latent's transfer takes 0.4 s
    rt = ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(None), fetch_hook=StoreLatency(50, rate))
    try:
        rt.archives.open(dest, None)   # opened once beforehand: only the fetches are timed
        for image_id, row in rows.items():
            t0 = time.perf_counter()
            rt.fetch(dest, image_id, None)
            expected = 0.05 + row.stored_bytes / (rate * 1e6)
            assert expected <= time.perf_counter() - t0 < expected + 2.0, image_id
    finally:
        rt.close()
