"""An archive that cannot be reached is a StoreError after bounded retries, never "no such image"
(an id is absent only when a reachable archive's catalog says so), on every read path; and a
serving worker keeps one cache per archive however its URL is spelt (docs/serving.md)."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import lbdask
from lbdask import cli
from lbdask.access.log import load_access
from lbdask.archive import Archive, CatalogRow
from lbdask.errors import StoreError, UnknownImageError
from lbdask.serve.settings import ServeSettings
from lbdask.serve.worker import ServingWorker
from lbdask.storage import canonical_url, open_location
from tests.support.archive import new_archive, write_batch
from tests.support.cluster import png_bytes

KEPT = {"k.png": png_bytes(np.zeros((8, 8, 3), np.uint8)), "k2.png": png_bytes(np.full((8, 8, 3), 9, np.uint8))}
UNREACHABLE = "unreachable after 3 attempts"


def small_archive(dest: str) -> Archive:
    """Latent rows folded into the index ("a", "b"), one unfolded batch ("c") and two kept PNGs."""
    arc = new_archive(dest)
    write_batch(arc, "b0", ["a", "b"])
    arc.compact()
    write_batch(arc, "b1", ["c"], seed=1)
    refs = arc.put_originals("b2", KEPT)
    arc.commit("b2", [CatalogRow(id=i, status="kept", reason="alpha", source_size=len(data), width=8, height=8,
                                 source_sha256=hashlib.sha256(data).hexdigest(), mode="RGB",
                                 stored_bytes=len(data), original=refs[i]) for i, data in KEPT.items()])
    return arc


def move(dest: str, to: str) -> None:
    """Rename the archive folder, or move every object of the S3 prefix."""
    loc, root = open_location(dest), open_location(to).root
    if loc.is_remote:
        for path in loc.fs.find(loc.root):
            loc.fs.pipe_file(root + path[len(loc.root):], loc.fs.cat_file(path))
        loc.fs.rm(loc.root, recursive=True)
        loc.fs.invalidate_cache()
    else:
        os.rename(loc.root, root)


def test_a_vanished_archive_is_a_store_error_on_every_in_process_path(dest):
    small_archive(dest)
    box, arc = lbdask.open(dest), Archive.open(dest)
    assert box.read("k.png") == KEPT["k.png"]
    with pytest.raises(UnknownImageError):   # reachable and healthy: absent means absent
        box.read("nope.png")
    move(dest, dest + "-moved")
    for image_id in ("a", "nope.png"):   # an id in the index, an absent one: neither is "unknown" now
        with pytest.raises(StoreError, match=UNREACHABLE):
            box.read(image_id)
    with pytest.raises(StoreError, match="zarr.json is gone"):
        arc.get_row("a")
    with pytest.raises(StoreError):   # ls, report, stats, verify list the rows
        list(arc.rows())
    with pytest.raises(StoreError):   # the retier sweep lists every committed row
        list(arc.committed_rows())
    with pytest.raises(StoreError, match=UNREACHABLE + ".*does not exist"):
        Archive.open(dest)
    move(dest + "-moved", dest)
    assert box.read("k2.png") == KEPT["k2.png"] and arc.get_row("a").id == "a"
    with pytest.raises(UnknownImageError):
        box.read("nope.png")
    loc = open_location(dest)
    if loc.is_remote:   # the whole bucket deleted
        loc.fs.rm(loc.root.split("/")[0], recursive=True)
        loc.fs.invalidate_cache()
        with pytest.raises(StoreError, match=UNREACHABLE):
            box.read("a")


def test_commands_on_a_renamed_archive_say_so_in_one_line(tmp_path, capfd):
    dest = str(tmp_path / "arc")
    small_archive(dest)
    os.rename(dest, dest + "-moved")
    said = f"lbdask: error: archive {dest} {UNREACHABLE}: {dest} does not exist"
    light = [["read", dest, "a"], ["ls", dest], ["report", dest], ["stats", dest]]   # real processes, together
    procs = [subprocess.Popen([sys.executable, "-m", "lbdask", *c], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for c in light]
    for command, proc in zip(light, procs):
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 2 and err.count("\n") == 1 and err.startswith(said), (command, err)
    for command in (["verify", dest], ["retier", dest]):   # in this process: they import torch and Dask first
        assert cli.main(command) == 2
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and err.startswith(said), (command, err)


def kept_serving() -> ServingWorker:
    """A serving worker for kept images only (no model is ever called)."""
    return ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(None))


def test_serving_retries_an_unreachable_archive_then_says_so(tmp_path):
    dest = str(tmp_path / "arc")
    small_archive(dest)
    rt = kept_serving()
    try:
        assert asyncio.run(rt.read(dest, "k.png")) == KEPT["k.png"]
        with pytest.raises(UnknownImageError):
            asyncio.run(rt.read(dest, "nope.png"))
        os.rename(dest, dest + "-moved")
        with pytest.raises(StoreError, match=UNREACHABLE):   # docs/serving.md: fetch_retries 2, 3 attempts
            asyncio.run(rt.read(dest, "k2.png"))
        assert rt.stats()["fetch_retries"] == 2
        assert asyncio.run(rt.read(dest, "k.png")) == KEPT["k.png"]   # what is cached is still served
        os.rename(dest + "-moved", dest)
        assert asyncio.run(rt.read(dest, "k2.png")) == KEPT["k2.png"]
    finally:
        rt.close()


def test_an_s3_prefix_has_one_canonical_url():
    assert {canonical_url(u) for u in ("s3://b/p/arc", "s3://b/p/arc/", "s3://b//p/arc")} == {"s3://b/p/arc"}


def test_one_cache_per_archive_however_its_url_is_spelt(tmp_path, monkeypatch):
    dest = str(tmp_path / "arc")
    small_archive(dest)
    os.symlink(dest, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    rt = kept_serving()
    try:
        names = [dest, "arc", "./arc", dest + "/", "file://" + dest, "link"]
        assert [asyncio.run(rt.read(name, "k.png")) for name in names] == [KEPT["k.png"]] * len(names)
        s = rt.stats()
        assert (s["fetches"], s["misses"], s["image_hits"] + s["latent_hits"]) == (1, 1, len(names) - 1)
        assert len(rt.archives._archives) == len(rt.watch._known) == len(rt.access._logs) == 1
        rt.access.flush()
        assert load_access(open_location(dest))["k.png"].count == len(names)
    finally:
        rt.close()


def test_a_latent_of_a_bucket_the_handle_never_opened_is_a_store_error_once_the_archive_is_gone(dest):
    """The row comes from the handle's cached catalog, so nothing before the latent read
    touches the store: the bucket that is not there must say "gone", not "no such bucket"."""
    small_archive(dest)
    arc = Archive.open(dest)
    row = arc.get_row("a")
    move(dest, dest + "-moved")
    with pytest.raises(StoreError):
        arc.read_latent(row)
    move(dest + "-moved", dest)
    assert arc.read_latent(row).bits == row.bits
