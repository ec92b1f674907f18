"""The retier sweep gives back latent shards no row references any more (on a folder and
the local S3 server): a shard of moved rows goes, a shard with one live latent stays
(reported as pinned), a shard of a batch that never committed stays, and a sweep killed
after any delete leaves every row readable and the next sweep finishes it.

Hand-made archives (no model): rows of batch `m1`/`m2` are moved by a later batch to other
shards, as a re-encode or a re-migration does; the end-to-end runs are in
tests/retier/test_reencode.py and tests/system/test_retier_crash.py.
"""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

from lbdask.archive import Archive, CatalogRow
from lbdask.retier import sweep as retier_sweep
from lbdask.retier.sweep import sweep
from tests.support.archive import SHAPE, encoded, new_archive

OLD, NEW = Archive.bucket_name(8, *SHAPE), "m" + "e" * 16 + "-" + Archive.bucket_name(8, *SHAPE)


def put(arc: Archive, bucket: str, ids: list[str], batch: str | None, seed: int) -> list[CatalogRow]:
    """A fresh shard of `ids` in `bucket`, committed as `batch` (None: written, never committed)."""
    encs = encoded(len(ids), seed=seed)
    indices = arc.write_shard(bucket, arc.allocate_shards(bucket, 1), encs)
    rows = [CatalogRow(id=i, status="latent", bucket=bucket, index=k, bits=8, lo=e.lo, hi=e.hi, checksum=e.checksum,
                       stored_bytes=100 + k) for i, k, e in zip(ids, indices, encs)]
    if batch:
        assert arc.commit(batch, rows)
    return rows


def build(dest: str) -> tuple[Archive, list[CatalogRow]]:
    """Shard 0 (m1: a0..a3, all moved), shard 1 (m2: b0 moved, b1 live), shard 2 (never committed),
    and the moved rows in bucket NEW (rt1). Returns the archive and the rows moved away from."""
    arc = new_archive(dest, shard_size=8)
    arc.ensure_bucket(NEW, 8, *SHAPE)
    old = put(arc, OLD, ["a0", "a1", "a2", "a3"], "m1", 0) + put(arc, OLD, ["b0", "b1"], "m2", 1)
    put(arc, OLD, ["c0"], None, 2)
    arc.compact()  # m1, m2 folded: the sweep finds their rows in the folded copies
    put(arc, NEW, ["a0", "a1", "a2", "a3", "b0"], "rt1", 3)
    return arc, old


def shards_on_store(arc: Archive, bucket: str) -> set[int]:
    arc.loc.fs.invalidate_cache()
    return {int(k) for p in arc.loc.fs.find(arc.loc.path(arc.shards_folder(bucket)))
            if p.endswith("/0/0/0") and (k := p.rsplit("/", 4)[1]).isdigit()}


def all_read(arc: Archive) -> None:
    for row in arc.rows():
        arc.read_latent(row)  # checksum verified


def test_shards_of_moved_rows_go_live_and_uncommitted_ones_stay(dest):
    arc, old = build(dest)
    size0 = arc.loc.fs.size(arc.loc.path(arc.shard_key(OLD, 0)))
    assert shards_on_store(arc, OLD) == {0, 1, 2}
    swept = sweep(arc)
    assert shards_on_store(arc, OLD) == {1, 2}  # 1: b1 is live; 2: its batch never committed
    assert shards_on_store(arc, NEW) == {0}
    b0 = next(r for r in old if r.id == "b0")
    assert swept == {"objects": 1, "bytes": size0, "latent_shards": 1, "latent_bytes": size0,
                     "pinned_shards": 1, "pinned_bytes": b0.stored_bytes}
    all_read(Archive.open(dest))
    assert sweep(Archive.open(dest))["latent_shards"] == 0  # nothing left to do
    # moving b1 too frees shard 1; the emptied bucket keeps its metadata and shard numbers
    put(arc, NEW, ["b1"], "rt2", 4)
    assert sweep(Archive.open(dest))["latent_shards"] == 1 and shards_on_store(arc, OLD) == {2}
    all_read(Archive.open(dest))
    assert Archive.open(dest, mode="a").allocate_shards(OLD, 1) == 3


def test_a_sweep_killed_after_any_delete_is_finished_by_the_next(dest, monkeypatch):
    class Crash(Exception):
        pass

    real = retier_sweep.remove_quietly
    for k in range(4):  # calls: the originals sweep, then one per shard (OLD 0 and 1)
        arc, _ = build(f"{dest}{k}")
        put(arc, NEW, ["b1"], "rt2", 4)  # shards 0 and 1 of OLD are both unreferenced now
        calls = []

        def crashing(loc, paths):
            if len(calls) == k:
                raise Crash
            calls.append(list(paths))
            real(loc, paths)

        with monkeypatch.context() as m:
            m.setattr(retier_sweep, "remove_quietly", crashing)
            try:
                sweep(arc)
                finished = True
            except Crash:
                finished = False
        all_read(Archive.open(f"{dest}{k}"))
        if finished:
            assert k == 3 and shards_on_store(arc, OLD) == {2}, calls
            return
        sweep(Archive.open(f"{dest}{k}"))  # the next run's sweep
        assert shards_on_store(arc, OLD) == {2}, k
        all_read(Archive.open(f"{dest}{k}"))
    pytest.fail("the sweep never finished")


def test_every_shard_freed_or_pinned_in_one_sweep_is_counted(tmp_path):
    """Two shards freed and two pinned by one sweep: the report sums them; a shard stays
    pinned whichever of its latents is the live one; an object the shard layout does not
    name (under the bucket's `c/`) is neither deleted nor in the way. (A folder only: the
    listings are those of the test above.)"""
    dest = str(tmp_path / "arc")
    arc = new_archive(dest, shard_size=4)
    arc.ensure_bucket(NEW, 8, *SHAPE)
    put(arc, OLD, ["a0", "a1"], "m1", 0)
    put(arc, OLD, ["b0", "b1", "b2"], "m2", 1)
    c = put(arc, OLD, ["c0", "c1"], "m3", 2)
    d = put(arc, OLD, ["d0", "d1", "d2"], "m4", 3)
    foreign = arc.loc.path(f"{arc.shards_folder(OLD)}/notes/0/0/0")
    arc.loc.fs.makedirs(foreign.rsplit("/", 1)[0], exist_ok=True)
    arc.loc.fs.pipe_file(foreign, b"not a shard")
    size = {k: arc.loc.fs.size(arc.loc.path(arc.shard_key(OLD, k))) for k in (0, 1)}
    # shards 0 and 1 move whole; of shards 2 and 3 the later latents move, the first stays live
    put(arc, NEW, ["a0", "a1", "b0", "b1"], "rt1", 4)
    put(arc, NEW, ["b2", "c1", "d1", "d2"], "rt2", 5)
    swept = sweep(Archive.open(dest))
    assert shards_on_store(arc, OLD) == {2, 3}
    assert swept == {"objects": 2, "bytes": size[0] + size[1], "latent_shards": 2, "latent_bytes": size[0] + size[1],
                     "pinned_shards": 2, "pinned_bytes": c[1].stored_bytes + d[1].stored_bytes + d[2].stored_bytes}
    assert arc.loc.fs.cat_file(foreign) == b"not a shard"
    all_read(Archive.open(dest))


def kept(arc: Archive, batch: str, pngs: dict[str, bytes], folder: str = "originals") -> dict[str, CatalogRow]:
    """Kept rows of `pngs` on one new object of `batch` in `folder` ("pixels": the pixel tier's copies)."""
    refs = arc.put_originals(batch, pngs, folder)
    return {i: CatalogRow(id=i, status="kept", original=refs[i], source_sha256=hashlib.sha256(data).hexdigest(),
                          stored_bytes=len(data)) for i, data in pngs.items()}


def objects_on_store(arc: Archive, folders: tuple[str, ...] = ("originals", "pixels")) -> set[str]:
    """`<folder>/<batch>.bin` of every object in `folders`, in a fan-out subfolder or not."""
    arc.loc.fs.invalidate_cache()
    return {f"{folder}/{p.rsplit('/', 1)[-1]}" for folder in folders for p in arc.loc.fs.find(arc.loc.path(folder))}


def flat_layout(folder: str, batch_id: str) -> str:
    """`Archive.batch_object` of the archives written before the fan-out subfolders."""
    return f"{folder}/{batch_id}.bin"


def test_kept_and_pixel_objects_no_row_references_go_and_the_others_stay(dest, monkeypatch):
    arc = new_archive(dest)
    pngs = {i: i.encode() * (3 + k) for k, i in enumerate(["p0", "p1", "q0", "q1", "e0"])}
    with monkeypatch.context() as old:  # k1 as an archive written before the fan-out holds it
        old.setattr(Archive, "batch_object", staticmethod(flat_layout))
        k1 = kept(arc, "k1", {i: pngs[i] for i in ("p0", "p1")})
    assert k1["p0"].original.key == "originals/k1.bin"
    k2 = kept(arc, "k2", {i: pngs[i] for i in ("q0", "q1")})
    assert arc.commit("k1", list(k1.values())) and arc.commit("k2", list(k2.values()))
    kept(arc, "x1", {"p0": b"never committed"})                # a writer that has not committed (yet)
    failed = dataclasses.replace(kept(arc, "f1", {"e0": b""})["e0"], status="failed")  # an empty input's raw bytes
    assert arc.commit("f1", [failed])
    arc.compact()                                              # k1, k2 folded
    # promotes: q0 and q1 each get a pixel-tier copy (one object per batch)
    for batch, image_id in (("px1", "q0"), ("px2", "q1")):
        ref = arc.put_originals(batch, {image_id: pngs[image_id]}, "pixels")[image_id]
        assert arc.commit(batch, [dataclasses.replace(k2[image_id], pixel=ref)])
    # a later batch moves p0 and p1 to another object, drops q0's pixel copy (a demote) and
    # keeps e0 (its source fixed and migrated again)
    rt1 = kept(arc, "rt1", {i: pngs[i] for i in ("p0", "p1", "e0")})
    assert arc.commit("rt1", [*rt1.values(), k2["q0"]])
    sizes = {name: arc.loc.fs.size(arc.loc.path(name))
             for name in ("originals/k1.bin", arc.batch_object("originals", "f1"), arc.batch_object("pixels", "px1"))}
    swept = sweep(Archive.open(dest))
    assert objects_on_store(arc) == {"originals/k2.bin", "originals/x1.bin", "originals/rt1.bin", "pixels/px2.bin"}
    assert swept == {"objects": 3, "bytes": sum(sizes.values()), "latent_shards": 0, "latent_bytes": 0,
                     "pinned_shards": 0, "pinned_bytes": 0}
    again = Archive.open(dest)
    for row in again.rows():
        assert again.read_original(row) == pngs[row.id]
    assert again.get_row("q1").pixel is not None
    assert sweep(again)["objects"] == 0


def test_a_released_pixel_copy_of_a_latent_goes_without_any_kept_original(tmp_path):
    """An archive of latents only has no `originals/`: the pixel tier is swept all the same."""
    dest = str(tmp_path / "arc")
    arc = new_archive(dest)
    (row,) = put(arc, OLD, ["a0"], "m1", 0)
    ref = arc.put_originals("px1", {"a0": b"decoded png"}, "pixels")["a0"]
    assert arc.commit("px1", [dataclasses.replace(row, pixel=ref)])  # promote
    assert arc.commit("rt1", [row])                                  # demote: the pixel copy is released
    swept = sweep(Archive.open(dest))
    assert swept["objects"] == 1 and swept["bytes"] == len(b"decoded png")
    assert objects_on_store(arc, ("pixels",)) == set() and shards_on_store(arc, OLD) == {0}
    all_read(Archive.open(dest))


def test_png_metadata_objects_go_when_no_row_references_them(tmp_path):
    """A moved row keeps its reference into the migration batch's `meta/` object, which stays while
    any current row references it (here after b0 was migrated again) and goes once none does."""
    arc = new_archive(str(tmp_path / "arc"))
    big = [("tEXt", b"workflow\x00" + b"{}" * 400)]
    m1 = [dataclasses.replace(r, chunks=big) for r in put(arc, OLD, ["a0", "b0"], None, 0)]
    assert arc.commit("m1", m1)
    moved = arc.get_row("a0")                                  # a retier move: a new row, the same metadata
    assert arc.commit("rt1", [dataclasses.replace(moved, stored_bytes=1)])
    assert arc.commit("m2", [dataclasses.replace(m1[1], chunks=big + big)])  # b0 migrated again
    swept = sweep(Archive.open(str(tmp_path / "arc")))
    assert objects_on_store(arc, ("meta",)) == {"meta/m1.bin", "meta/m2.bin"}
    assert swept["objects"] == 0
    arc.commit("rt2", [dataclasses.replace(arc.get_row("a0"), chunks_ref=None)])  # a0 loses its metadata
    assert sweep(Archive.open(str(tmp_path / "arc")))["objects"] == 1
    assert objects_on_store(arc, ("meta",)) == {"meta/m2.bin"}


def test_a_batch_whose_writer_died_before_announcing_it_keeps_its_shard_and_reads_after_compaction(dest):
    """A worker killed between writing its batch object and claiming its log slot: readers do
    not see the rows yet, the next compaction folds them, so the sweep must not free their shard."""
    from lbdask.archive.rows import dump_rows
    from lbdask.archive.objects import put_atomic

    arc, _old = build(dest)
    arc.compact()
    rows = put(arc, NEW, ["d0"], None, 5)  # its shard written; the commit below never announced
    put_atomic(arc.loc, arc.catalog.batch_path("rt3"), dump_rows([dataclasses.replace(r, batch_id="rt3") for r in rows]))
    assert Archive.open(dest).get_row("d0") is None  # not visible before the next compaction
    sweep(Archive.open(dest))
    Archive.open(dest, mode="a").compact()
    after = Archive.open(dest)
    assert after.get_row("d0") is not None
    all_read(after)
