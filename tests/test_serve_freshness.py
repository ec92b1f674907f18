"""A serving worker follows catalog changes (serve.freshness): a cached id whose row moved is
dropped within `catalog_refresh_s`, and a fetch whose object was swept reads the row again.

In-process runtime on a tiny archive; the move is what `lbdask retier` does to a kept PNG
(a new committed batch with a new object, then the old object deleted by the sweep).
tests/test_retier_serving.py checks the same through real processes and real retier runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time

import numpy as np
import pytest
from cluster_helpers import png_bytes
from serve_helpers import build_serving_archive

from lbdask.archive import Archive
from lbdask.errors import ConfigError
from lbdask.serve.runtime import ServeRuntime
from lbdask.serve.settings import ServeSettings, load_serve_settings


@pytest.fixture(scope="module")
def model(taef2_dir):
    from lbdask.models import load_model

    return load_model("taef2", weights=taef2_dir, device="cpu")


@pytest.fixture
def dest(tmp_path, model) -> str:
    dest = str(tmp_path / "arc")
    build_serving_archive(dest, model, n=1)
    return dest


def runtime(model, refresh_s: float) -> ServeRuntime:
    settings = ServeSettings()
    settings.runtime = dataclasses.replace(settings.runtime, catalog_refresh_s=refresh_s)
    return ServeRuntime(settings, lambda: contextlib.nullcontext(model))


def move_kept(dest: str, batch: str, pixels: np.ndarray) -> tuple[bytes, str]:
    """Commit a new row for `kept.png` on a new object in batch `batch` (as a retier move does);
    returns its new bytes and the old object's path (not deleted yet)."""
    arc = Archive.open(dest, mode="a")
    old = arc.get_row("kept.png")
    data = png_bytes(pixels)
    ref = arc.put_originals(batch, {"kept.png": data})["kept.png"]
    sha = hashlib.sha256(data).hexdigest()
    arc.commit(batch, [dataclasses.replace(old, original=ref, source_sha256=sha, stored_sha256=sha,
                                           source_size=len(data), stored_bytes=len(data))])
    return data, arc.loc.path(old.original.key)


def test_a_cached_id_follows_its_moved_row_within_the_refresh_interval(dest, model):
    rt = runtime(model, 0.2)
    try:
        first = asyncio.run(rt.read(dest, "kept.png"))
        assert asyncio.run(rt.read(dest, "kept.png")) == first   # cached now (and served from the cache)
        new, old_path = move_kept(dest, "b1", np.full((24, 24, 3), 7, np.uint8))
        Archive.open(dest).loc.fs.rm(old_path)                    # the sweep deleted the old object
        deadline = time.monotonic() + 10
        while (got := asyncio.run(rt.read(dest, "kept.png"))) != new:
            assert got == first   # until the watch's next pass: the cached bytes, never an error
            assert time.monotonic() < deadline, "the cached id never followed its catalog row"
            time.sleep(0.05)
        assert rt.stats()["catalog_dropped"] >= 1
        # a compaction folds the batches into the index (another generation, same rows): nothing is dropped again
        Archive.open(dest, mode="a").compact()
        rt.watch.check()
        assert rt.stats()["catalog_dropped"] == 1 and asyncio.run(rt.read(dest, "kept.png")) == new
    finally:
        rt.close()


def test_a_batch_committed_and_folded_between_two_passes_is_seen(dest, model):
    rt = runtime(model, 3600)   # passes only when the test asks
    try:
        first = asyncio.run(rt.read(dest, "kept.png"))
        new, old_path = move_kept(dest, "b1", np.full((24, 24, 3), 5, np.uint8))
        Archive.open(dest, mode="a").compact()   # b1 leaves catalog/batches/ for catalog/folded/
        Archive.open(dest).loc.fs.rm(old_path)
        assert asyncio.run(rt.read(dest, "kept.png")) == first
        assert rt.watch.check() == 1
        assert asyncio.run(rt.read(dest, "kept.png")) == new
        assert rt.watch.check() == 0   # nothing new since
    finally:
        rt.close()


def test_a_fetch_whose_object_was_swept_reads_the_row_again(dest, model, monkeypatch):
    rt = runtime(model, 3600)   # no watch pass during the test
    try:
        archive = rt.archive(dest, None)
        stale = archive.get_row("kept.png")
        new, old_path = move_kept(dest, "b1", np.full((24, 24, 3), 9, np.uint8))
        archive.loc.fs.rm(old_path)
        real, calls = archive.get_row, []

        def racing(image_id):  # the first lookup ran just before the retier committed (the race)
            calls.append(image_id)
            return stale if len(calls) == 1 else real(image_id)

        monkeypatch.setattr(archive, "get_row", racing)
        assert asyncio.run(rt.read(dest, "kept.png")) == new
        assert len(calls) == 2
    finally:
        rt.close()


def test_catalog_refresh_must_be_positive(tmp_path):
    assert load_serve_settings().runtime.catalog_refresh_s > 0
    bad = tmp_path / "serve.yaml"
    bad.write_text("runtime:\n  catalog_refresh_s: 0\n")
    with pytest.raises(ConfigError, match="catalog_refresh_s"):
        load_serve_settings(str(bad))
