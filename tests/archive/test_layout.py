"""Per-batch objects (`originals/`, `meta/`, `pixels/`, `catalog/folded/`) lie in 256 fan-out
subfolders and log slots in folders of SLOTS_PER_FOLDER, so no folder grows one entry per batch;
archives written before (`<folder>/<batch>.bin`) still read, and repair and new writes work
beside their objects (issue 25)."""
from __future__ import annotations

import hashlib

from lbdask.archive import Archive, CatalogRow, commit_log
from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.meta import row_chunks
from lbdask.archive.repair import _first_slot, diagnose
from lbdask.storage import open_location
from tests.support.archive import new_archive

WORKFLOW = [("tEXt", b"workflow\x00" + b"{}" * 400)]  # above INLINE_MAX: goes to meta/


def kept_batch(arc: Archive, batch: str, n: int) -> list[CatalogRow]:
    """`n` kept rows of `batch`, their copies in one originals object, their chunks in one meta object."""
    data = {f"{batch}-{i}.png": f"{batch}-{i}".encode() * 20 for i in range(n)}
    refs = arc.put_originals(batch, data)
    rows = [CatalogRow(id=i, status="kept", original=refs[i], source_sha256=hashlib.sha256(d).hexdigest(),
                       stored_bytes=len(d), chunks=WORKFLOW) for i, d in data.items()]
    assert arc.commit(batch, rows)
    return rows


def entries(arc: Archive, folder: str) -> list[str]:
    return [p.rstrip("/").rsplit("/", 1)[-1] for p in arc.loc.fs.ls(arc.loc.path(folder), detail=False)]


def test_per_batch_objects_spread_over_fan_out_subfolders(tmp_path):
    arc = new_archive(str(tmp_path / "arc"))
    for b in range(40):
        kept_batch(arc, f"b{b:03d}", 1)
    arc.compact()
    for folder in ("originals", "meta", "catalog/folded"):
        names = entries(arc, folder)
        assert all(len(n) == 2 and int(n, 16) >= 0 for n in names), names  # only subfolders, never an object
        assert 10 < len(names) <= 256
    row = arc.get_row("b007-0.png")
    assert row.original.key == Archive.batch_object("originals", "b007") != "originals/b007.bin"
    assert row.chunks_ref.key.startswith("meta/") and row.chunks_ref.key.endswith("/b007.bin")


def test_an_archive_written_before_the_fan_out_reads_and_takes_new_batches(tmp_path, monkeypatch):
    dest = str(tmp_path / "arc")
    with monkeypatch.context() as old:  # as the code before the fan-out wrote every object
        old.setattr(Archive, "batch_object", staticmethod(lambda folder, batch: f"{folder}/{batch}.bin"))
        before = kept_batch(new_archive(dest), "old", 3)
    arc = Archive.open(dest, mode="a")
    arc.compact()
    assert sorted(entries(arc, "originals")) == ["old.bin"] and entries(arc, "meta") == ["old.bin"]
    after = kept_batch(arc, "new", 2)
    fresh = Archive.open(dest)
    for row in before + after:
        stored = fresh.get_row(row.id)
        assert fresh.read_original(stored) == row.id.removesuffix(".png").encode() * 20
        assert row_chunks(fresh, stored) == WORKFLOW
    assert fresh.get_row("old-0.png").original.key == "originals/old.bin"
    assert list(diagnose(fresh).data) == []  # repair's dry run finds every referenced object


def test_log_slots_fill_numbered_folders_and_repair_walks_back_across_them(tmp_path, monkeypatch):
    monkeypatch.setattr(commit_log, "SLOTS_PER_FOLDER", 2)
    cat = Catalog(open_location(str(tmp_path / "arc")))
    cat.commit("a", [CatalogRow(id="x", status="failed", reason="a")])  # slot 0
    compact(cat)  # fence at slot 1
    for b in "bcd":  # slots 2, 3, 4
        cat.commit(b, [CatalogRow(id=b, status="failed", reason=b)])
    log = cat.loc.path("catalog", "log")
    assert [p[len(log) + 1:] for p in sorted(cat.loc.fs.find(log))] == [
        "00000000/000000000000.json", "00000000/000000000001.json", "00000001/000000000002.json",
        "00000001/000000000003.json", "00000002/000000000004.json"]
    fresh = Catalog(cat.loc)
    assert [fresh.get_row(i).reason for i in "xbcd"] == list("abcd") and fresh.view().end == 5
    assert _first_slot(fresh) == 2  # the newest fence is two folders back
    compact(fresh)  # fence at slot 5: the next writer claims slot 6, in folder 3
    cat.commit("e", [CatalogRow(id="e", status="failed", reason="e")])
    assert cat.loc.fs.exists(f"{log}/00000003/000000000006.json") and Catalog(cat.loc).get_row("e").reason == "e"
