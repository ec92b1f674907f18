"""A rerun finds sources that changed in place with the same size (mtime on a folder, ETag on
S3) and migrates them again on request. The migration's steps run here without a cluster
(list, scan, stamp, plan, read, store and commit: what the Dask tasks do), on a folder and
on the local S3 server; `migrate/test_integrity.py` runs the real `lbdask migrate` twice."""
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from lbdask.archive import Archive
from lbdask.migrate.job import pending_work
from lbdask.migrate.plan import batch_id_for, plan_batches
from lbdask.migrate.preflight import source_changed
from lbdask.migrate.scan import scan_group
from lbdask.migrate.tasks import read_png
from lbdask.representation.listing import iter_source_ids
from lbdask.representation.settings import load_job_settings
from lbdask.representation.shard import write_shard
from lbdask.representation.sources import list_source_ids, with_stamps
from lbdask.storage import open_location
from tests.support.archive import MODEL


@pytest.fixture(params=["folder", "s3"])
def where(request):
    if request.param == "folder":
        return str(request.getfixturevalue("tmp_path"))
    return request.getfixturevalue("s3_bucket")


def palette_png(version: str) -> bytes:
    """A palette PNG (kept, no model needed) whose text chunk has the same length in every version."""
    info = PngImagePlugin.PngInfo()
    info.add_text("version", version)
    out = io.BytesIO()
    Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 7).convert("P").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def migrate(src: str, dest: str, remigrate: bool = False) -> list[str]:
    """One rerun of the driver's steps; returns the changed ids it found."""
    settings = load_job_settings()
    pending = pending_work(Archive.create(dest, MODEL), iter_source_ids(open_location(src)), remigrate, lambda _: None)
    todo, changed = pending.todo, pending.changed
    for batch in plan_batches(with_stamps(scan_group(src, {}, todo), pending.stamps), settings, 16) if todo else []:
        write_shard(dest, {}, read_png(src, {}, batch, settings), None, settings)
    return changed


def test_a_source_rewritten_in_place_with_the_same_size_is_found_and_migrated_again(where):
    src, dest = f"{where}/src", f"{where}/arc"
    loc = open_location(src)
    loc.fs.makedirs(loc.root, exist_ok=True)
    old, new = palette_png("1"), palette_png("2")
    assert len(old) == len(new) and old != new
    loc.fs.pipe_file(loc.path("a.png"), old)
    loc.fs.pipe_file(loc.path("b.png"), palette_png("b"))
    assert migrate(src, dest) == []
    stamps = list_source_ids(loc).stamps
    row = Archive.open(dest).get_row("a.png")
    assert row.source_stamp == stamps["a.png"] and row.source_stamp.startswith("etag:" if loc.is_remote else "mtime:")
    loc.fs.pipe_file(loc.path("a.png"), new)  # edited in place: same name, same size
    assert migrate(src, dest) == ["a.png"]  # reported, left as it was
    assert Archive.open(dest).read_original(Archive.open(dest).get_row("a.png")) == old
    assert migrate(src, dest, remigrate=True) == ["a.png"]
    arc = Archive.open(dest)
    row = arc.get_row("a.png")
    assert arc.read_original(row) == new and row.source_stamp == list_source_ids(loc).stamps["a.png"]
    assert sorted(r.id for r in arc.rows()) == ["a.png", "b.png"]
    assert migrate(src, dest) == []  # the new version is the migrated one


def test_rows_without_a_stamp_are_compared_by_size_only(tmp_path):
    """Archives written before stamps existed: no false alarm on every rerun."""
    src, dest = str(tmp_path / "src"), str(tmp_path / "arc")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(palette_png("1"))
    migrate(src, dest)
    [listed] = iter_source_ids(open_location(src))
    row = Archive.open(dest).get_row("a.png")
    row.source_stamp = None
    assert not source_changed(listed, row)
    row.source_size += 1
    assert source_changed(listed, row)


def test_a_touched_file_gets_a_new_batch_so_its_new_stamp_is_recorded(tmp_path):
    """Same bytes, new mtime: the batch id changes, so the rerun commits instead of skipping."""
    (tmp_path / "a.png").write_bytes(palette_png("1"))
    [item] = scan_group(str(tmp_path), {}, ["a.png"])
    listing = list_source_ids(open_location(str(tmp_path)))
    [stamped] = with_stamps([item], listing.stamps)
    assert stamped.stamp == listing.stamps["a.png"]
    touched = dataclasses.replace(stamped, stamp="mtime:1")
    assert batch_id_for("keep", [stamped]) != batch_id_for("keep", [touched])
    assert batch_id_for("keep", [item]) == batch_id_for("keep", [item])
