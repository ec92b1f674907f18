"""A serving worker follows catalog changes (serve.freshness): a cached id whose row moved is
dropped within `catalog_refresh_s`, and a fetch whose object was swept reads the row again.

In-process serving worker on a tiny archive; the move is what `lbdask retier` does to a kept PNG
(a new committed batch with a new object, then the old object deleted by the sweep).
tests/system/test_retier_serving.py checks the same through real processes and real retier runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time

import numpy as np
import pytest

from lbdask.archive import Archive
from lbdask.archive.commit_log import slot_path
from lbdask.archive.rows import CatalogRow
from lbdask.errors import ConfigError
from lbdask.serve.freshness import CatalogWatch
from lbdask.serve.settings import ServeSettings, load_serve_settings
from lbdask.serve.worker import ServingWorker
from tests.support.archive import new_archive
from tests.support.cluster import png_bytes
from tests.support.serve import build_serving_archive
from tests.support.store_requests import counting


@pytest.fixture
def dest(tmp_path, model) -> str:
    dest = str(tmp_path / "arc")
    build_serving_archive(dest, model, n=1)
    return dest


def serving(model, refresh_s: float) -> ServingWorker:
    settings = ServeSettings()
    settings.worker = dataclasses.replace(settings.worker, catalog_refresh_s=refresh_s)
    return ServingWorker(settings, lambda: contextlib.nullcontext(model))


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
    rt = serving(model, 0.2)
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
    rt = serving(model, 3600)   # passes only when the test asks
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
    rt = serving(model, 3600)   # no watch pass during the test
    try:
        archive = rt.archives.open(dest, None)
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
    assert load_serve_settings().worker.catalog_refresh_s > 0
    bad = tmp_path / "serve.yaml"
    bad.write_text("worker:\n  catalog_refresh_s: 0\n")
    with pytest.raises(ConfigError, match="catalog_refresh_s"):
        load_serve_settings(str(bad))


def test_every_served_archive_is_watched_and_one_unreadable_catalog_stops_none_of_the_others(dest, model, tmp_path,
                                                                                           caplog):
    other = str(tmp_path / "other")
    build_serving_archive(other, model, n=1)
    rt = serving(model, 3600)
    try:
        firsts = [asyncio.run(rt.read(d, "kept.png")) for d in (dest, other)]
        news = [move_kept(d, "b1", np.full((24, 24, 3), k, np.uint8))[0] for k, d in enumerate((dest, other))]
        assert asyncio.run(rt.read(other, "kept.png")) == firsts[1]
        assert rt.watch.check() == 2   # one id of each archive
        assert [asyncio.run(rt.read(d, "kept.png")) for d in (dest, other)] == news
        # a batch object of `dest` that does not parse: a warning naming both; `other` still followed
        move_kept(dest, "b2", np.full((24, 24, 3), 4, np.uint8))
        arc = Archive.open(dest)
        bad = arc.catalog.batch_path("b2")
        arc.loc.fs.pipe_file(bad, b"not a catalog object")  # announced, then damaged
        newer, _ = move_kept(other, "b2", np.full((24, 24, 3), 3, np.uint8))
        with caplog.at_level("WARNING", logger="lbdask.serve.freshness"):
            assert rt.watch.check() == 1
        assert [r.getMessage() for r in caplog.records] == [
            f"lbdask: catalog of {dest} not checked for changes: catalog object {bad} is unreadable (BadGzipFile)"]
        assert asyncio.run(rt.read(other, "kept.png")) == newer
    finally:
        rt.close()


def test_a_fetch_that_overlaps_a_later_catalog_change_is_not_cached(dest, model, monkeypatch):
    """Every dropping pass counts, not only the first: a fetch that looked its id up before the
    second change serves what it read but leaves no stale copy in the cache."""
    rt = serving(model, 3600)
    try:
        asyncio.run(rt.read(dest, "kept.png"))
        first_move, _ = move_kept(dest, "b1", np.full((24, 24, 3), 1, np.uint8))
        assert rt.watch.check() == 1
        archive = rt.archives.open(dest, None)
        real, later = archive.get_row, []

        def changing(image_id):  # the second move commits and is seen while this fetch runs
            row = real(image_id)
            if not later:
                later.append(move_kept(dest, "b2", np.full((24, 24, 3), 2, np.uint8))[0])
                assert rt.watch.check() == 1
            return row

        monkeypatch.setattr(archive, "get_row", changing)
        assert asyncio.run(rt.read(dest, "kept.png")) == first_move
        assert asyncio.run(rt.read(dest, "kept.png")) == later[0]
    finally:
        rt.close()


@pytest.fixture(params=["folder", "s3"])
def plain(request, tmp_path) -> str:
    """A new archive without a model's weights (catalog rows only), on a folder and on S3."""
    dest = str(tmp_path / "plain") if request.param == "folder" else request.getfixturevalue("s3_bucket") + "/plain"
    new_archive(dest)
    return dest


def commit(dest: str, batch: str, ids: list[str]) -> None:
    assert Archive.open(dest, mode="a").commit(batch, [CatalogRow(id=i, status="failed", reason=batch) for i in ids])


def watching(dest: str) -> tuple[CatalogWatch, Archive, list[set[str]]]:
    """A watch (passes only when the test asks) of `dest`, its archive and the id sets it drops."""
    arc, dropped = Archive.open(dest), []
    watch = CatalogWatch(3600, lambda _dest, ids: dropped.append(set(ids)))
    watch.add(dest, dest, arc)
    return watch, arc, dropped


def test_a_pass_reads_the_commit_log_and_costs_two_requests_when_nothing_changed(plain):
    commit(plain, "b0", ["x"])
    watch, arc, dropped = watching(plain)
    try:
        with counting(arc.loc) as seen:
            assert watch.check() == 0
        assert seen.total <= 2 and seen.lists == 0  # the next slot (absent) and the one before it
        commit(plain, "b1", ["y", "z"])
        Archive.open(plain, mode="a").compact()  # b1 folded before the watch read its slot; a fence
        with counting(arc.loc) as seen:
            assert watch.check() == 2 and dropped == [{"y", "z"}]
        assert seen.lists == 0
        with counting(arc.loc) as seen:
            assert watch.check() == 0
        assert seen.total <= 2 and seen.lists == 0
    finally:
        watch.close()


def drop_slots(arc: Archive, below: int) -> None:
    """What an older lbdask's compaction did after its commit: delete the log slots below its fence."""
    for seq in range(below):
        arc.loc.fs.rm(slot_path(arc.catalog.log, seq))


def test_a_watch_that_fell_behind_a_compaction_that_deleted_its_slots_drops_what_it_folded(plain):
    commit(plain, "b0", ["x"])
    watch, arc, dropped = watching(plain)  # reads on from slot 1
    try:
        commit(plain, "b1", ["y"])  # slot 1
        Archive.open(plain, mode="a").compact()  # folds b0 and b1, fence at slot 2
        drop_slots(arc, 2)
        commit(plain, "b2", ["z"])  # slot 3
        assert watch.check() == 3 and set().union(*dropped) == {"x", "y", "z"}
        assert watch.check() == 0
    finally:
        watch.close()


def test_a_watch_that_fell_behind_two_pruned_generations_drops_every_id(plain):
    watch, arc, dropped = watching(plain)
    try:
        for n in range(2):
            commit(plain, f"b{n}", [f"i{n}"])
            Archive.open(plain, mode="a").compact()  # generation 2 prunes generation 1 and its folded list
        drop_slots(arc, 3)  # the second fence (slot 3) stays
        assert watch.check() == 2 and set().union(*dropped) == {"i0", "i1"}
        assert watch.check() == 0
    finally:
        watch.close()
