"""The object-store latency the serving benchmark injects: first byte + stored bytes / rate."""
from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest

from lbdask.archive import Archive
from lbdask.errors import ConfigError
from lbdask.serve.runtime import ServeRuntime
from lbdask.serve.settings import RuntimeConfig, ServeSettings, load_serve_settings
from tests.support.serve import build_serving_archive


def test_first_byte_plus_transfer():
    assert RuntimeConfig(fetch_delay_ms=100, fetch_mb_per_s=2.0).injected_fetch_s(1_000_000) == pytest.approx(0.6)
    assert RuntimeConfig(fetch_delay_ms=100).injected_fetch_s(10**9) == pytest.approx(0.1)   # no rate: no transfer
    assert RuntimeConfig().injected_fetch_s(10**9) == 0.0


def test_negative_rate_is_refused(tmp_path):
    bad = tmp_path / "serve.yaml"
    bad.write_text("runtime:\n  fetch_mb_per_s: -1\n")
    with pytest.raises(ConfigError, match="fetch_mb_per_s"):
        load_serve_settings(str(bad))


def test_fetch_waits_for_the_stored_bytes(tmp_path, taef2_dir):
    from lbdask.models import load_model

    dest = str(tmp_path / "arc")
    build_serving_archive(dest, load_model("taef2", weights=taef2_dir, device="cpu"), n=1)
    rows = {i: Archive.open(dest).get_row(i) for i in ("g/000.png", "kept.png")}
    rate = rows["g/000.png"].stored_bytes / 0.4e6            # the latent's transfer takes 0.4 s
    settings = ServeSettings()
    settings.runtime = dataclasses.replace(settings.runtime, fetch_delay_ms=50, fetch_mb_per_s=rate)
    rt = ServeRuntime(settings, lambda: contextlib.nullcontext(None))
    try:
        rt.archive(dest, None)   # opened once beforehand: only the fetches are timed
        for image_id, row in rows.items():
            t0 = time.perf_counter()
            rt.fetch(dest, image_id, None)
            expected = 0.05 + row.stored_bytes / (rate * 1e6)
            assert expected <= time.perf_counter() - t0 < expected + 2.0, image_id
    finally:
        rt.close()
