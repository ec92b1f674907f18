"""The retier sweep gives back latent shards no row references any more (on a folder and
the local S3 server): a shard of moved rows goes, a shard with one live latent stays
(reported as pinned), a shard of a batch that never committed stays, and a sweep killed
after any delete leaves every row readable and the next sweep finishes it.

Hand-made archives (no model): rows of batch `m1`/`m2` are moved by a later batch to other
shards, as a re-encode or a re-migration does; the end-to-end runs are in
tests/test_retier_reencode.py and tests/test_retier_crash.py.
"""
from __future__ import annotations

import pytest
from test_archive import SHAPE, encoded, new_archive

from lbdask.archive import Archive, CatalogRow
from lbdask.retier import sweep as retier_sweep
from lbdask.retier.sweep import sweep

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
    return {int(p.rsplit("/", 4)[1]) for p in arc.loc.fs.find(arc.loc.path(arc.shards_folder(bucket)))
            if p.endswith("/0/0/0")}


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
