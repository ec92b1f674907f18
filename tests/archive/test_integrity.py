"""Archive creation, corrupt shards, listings during compaction and the serving snapshot."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import zarr

from lbdask.archive import Archive
from lbdask.archive.snapshot import CatalogSnapshot
from lbdask.errors import InputError, IntegrityError
from lbdask.storage import open_location
from tests.support.archive import MODEL, new_archive, write_batch
from tests.support.store_requests import counting


def test_a_non_empty_folder_that_is_not_an_archive_is_refused(dest):
    loc = open_location(dest)
    loc.fs.makedirs(loc.root, exist_ok=True)
    loc.fs.pipe_file(loc.path("important.txt"), b"keep me")
    with pytest.raises(InputError, match="not an lbdask archive and is not empty .*important.txt"):
        Archive.create(dest, MODEL)
    assert sorted(p.rsplit("/", 1)[-1] for p in loc.fs.find(loc.root)) == ["important.txt"]


def test_an_interrupted_creation_is_resumed(dest):
    store = zarr.storage.LocalStore(dest) if not dest.startswith("s3://") else \
        zarr.storage.FsspecStore.from_url(dest, storage_options=open_location(dest).storage_options())
    group = zarr.open_group(store, mode="a", zarr_format=3)
    group.require_group("latents")  # killed before the lbdask attribute was written
    arc = Archive.create(dest, MODEL, shard_size=3)
    assert arc.shard_size == 3 and Archive.open(dest).model_info["name"] == "tiny"


def test_a_corrupt_shard_is_an_integrity_error_naming_the_id(dest):
    arc = new_archive(dest)
    write_batch(arc, "b0", ["a.png", "b.png"])
    row = arc.get_row("a.png")
    loc = open_location(dest)
    path = loc.path("latents", row.bucket, "c", "0", "0", "0", "0")
    blob = loc.fs.cat_file(path)
    loc.fs.pipe_file(path, bytes(len(blob) - 40) + blob[-40:])  # payload zeroed, shard index intact
    with pytest.raises(IntegrityError, match="'a.png'.*does not decode"):
        Archive.open(dest).read_latent(row)


def test_listing_survives_a_compaction_that_replaces_a_partition(dest):
    arc = new_archive(dest)
    arc.catalog.default_partitions = 1
    write_batch(arc, "b0", ["a.png", "b.png"])
    arc.compact()
    write_batch(arc, "b1", ["c.png"], seed=1)
    rows = arc.catalog.rows()
    first = next(rows)  # the batch objects and the manifest are read now
    Archive.open(dest, mode="a").compact()  # another process folds b1, deleting generation 1's partition
    assert sorted([first.id] + [r.id for r in rows]) == ["a.png", "b.png", "c.png"]


def test_a_warm_snapshot_lookup_costs_no_store_request(dest):
    arc = new_archive(dest)
    write_batch(arc, "b0", ["a.png", "b.png"])
    arc.compact()
    write_batch(arc, "b1", ["c.png"], seed=1)
    cat = Archive.open(dest).catalog
    snap = CatalogSnapshot(cat, max_age=3600)
    assert Archive.open(dest).snapshot(max_age=5).get_row("c.png").id == "c.png"
    with counting(cat.loc) as seen:
        assert snap.get_row("a.png").id == "a.png" and snap.get_row("c.png").batch_id == "b1"
        cold = seen.total
        assert cold > 0
        for _ in range(3):
            assert snap.get_row("a.png").id == "a.png" and snap.get_row("c.png").id == "c.png"
        assert seen.total == cold
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda i: snap.get_row(i).id, ["a.png", "b.png", "c.png"] * 20)) == {"a.png", "b.png", "c.png"}
    writer = Archive.open(dest, mode="a")
    write_batch(writer, "b2", ["d.png"], seed=2)
    writer.compact()  # a new generation; the pinned partitions were superseded
    assert snap.get_row("d.png") is None  # pinned: not refreshed yet
    snap.max_age = 0
    assert snap.get_row("d.png").id == "d.png" and snap.generation == 2
    assert snap.get_row("a.png").id == "a.png"


def test_a_folder_write_is_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    import os
    import stat

    from lbdask.archive import objects

    events = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link
    monkeypatch.setattr(objects.os, "fsync", lambda fd: (events.append(
        "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"), real_fsync(fd)))
    monkeypatch.setattr(objects.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b)))
    monkeypatch.setattr(objects.os, "link", lambda a, b: (events.append("link"), real_link(a, b)))
    loc = open_location(str(tmp_path / "arc"))
    objects.put_atomic(loc, loc.path("x", "obj"), b"data")
    # arc/ and arc/x/ are new: each one's entry is fsynced into its parent first
    assert events == ["fsync-dir", "fsync-dir", "fsync-file", "rename", "fsync-dir"]
    events.clear()
    assert objects.put_exclusive(loc, loc.path("x", "m"), b"1") and not objects.put_exclusive(loc, loc.path("x", "m"), b"2")
    assert events[:3] == ["fsync-file", "link", "fsync-dir"] and (tmp_path / "arc" / "x" / "m").read_bytes() == b"1"
    assert sorted(p.name for p in (tmp_path / "arc" / "x").iterdir()) == ["m", "obj"]  # no temporary left


def test_concurrent_exclusive_creates_of_one_key_have_exactly_one_winner(dest):
    """The compare-and-swap under contention (on S3: conditional PUTs racing on the server)."""
    from lbdask.archive import objects

    loc = open_location(dest)
    keys = [loc.path("cas", f"k{i}") for i in range(6)]
    body = bytes(1 << 20)  # large enough that the server spends a while between check and store
    writers = 8
    with ThreadPoolExecutor(writers) as pool:
        wins = list(pool.map(lambda job: objects.put_exclusive(loc, keys[job[0]], b"%d" % job[1] + body),
                             [(k, w) for k in range(len(keys)) for w in range(writers)]))
    per_key = [wins[k * writers:(k + 1) * writers] for k in range(len(keys))]
    assert [sum(w) for w in per_key] == [1] * len(keys)
    for key, w in zip(keys, per_key):  # the stored bytes are the winner's
        assert loc.fs.cat_file(key)[:1] == b"%d" % w.index(True)
