import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.history import read_job_records, write_job_record
from lbdask.errors import ArchiveFormatError, IntegrityError, ModelMismatchError, NotFoundError, StoreError
from lbdask.storage import open_location
from tests.support.archive import MODEL, SHAPE, encoded, new_archive, write_batch


def test_create_is_idempotent_and_records_model_and_format(dest):
    new_archive(dest)
    again = Archive.create(dest, MODEL, shard_size=99)
    assert again.shard_size == 4
    arc = Archive.open(dest)
    assert arc.model_info["name"] == "tiny" and arc.format_version == 3
    arc.check_model(MODEL["fingerprint"])
    with pytest.raises(ModelMismatchError, match=r"tiny .*not other"):
        arc.check_model("0" * 64, "other")
    with pytest.raises(ModelMismatchError):
        Archive.create(dest, {**MODEL, "fingerprint": "1" * 64})


def test_opening_something_that_is_not_an_archive(dest):
    with pytest.raises(StoreError, match="unreachable after 3 attempts: .* does not exist"):
        Archive.open(dest)   # nothing there: renamed, deleted, not mounted?
    loc = open_location(dest)
    loc.fs.makedirs(loc.root, exist_ok=True)
    loc.fs.pipe_file(loc.path("notes.txt"), b"x")   # something there (an S3 prefix exists once it holds an object)
    with pytest.raises(NotFoundError, match="no lbdask archive"):
        Archive.open(dest)
    loc.fs.pipe_file(loc.path("zarr.json"), b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(NotFoundError, match="not an lbdask archive"):
        Archive.open(dest)


def test_incompatible_format_version_is_refused(tmp_path):
    dest = str(tmp_path / "arc")
    new_archive(dest)
    group = zarr.open_group(dest, mode="r+")
    group.update_attributes({"lbdask": {**group.attrs["lbdask"], "format_version": 999}})
    with pytest.raises(ArchiveFormatError, match="version 999"):
        Archive.open(dest)


def test_unreachable_store_is_one_line_store_error():
    with pytest.raises(StoreError, match="cannot use archive store") as info:
        Archive.open("s3://nowhere/arc", storage_options={
            "endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}})
    assert "\n" not in str(info.value)


def test_latents_round_trip_and_corruption_is_detected(dest):
    arc = new_archive(dest)
    encs = write_batch(arc, "b0", ["a.png", "b.png", "c.png"])
    reader = Archive.open(dest)
    for image_id, enc in zip(["a.png", "b.png", "c.png"], encs):
        got = reader.read_latent(reader.get_row(image_id))
        np.testing.assert_array_equal(got.data, enc.data)
    row = reader.get_row("b.png")
    arr = zarr.open_array(arc._latents.store, path=f"latents/{row.bucket}", mode="r+")
    arr[row.index] = (arr[row.index] + 1) % 256
    with pytest.raises(IntegrityError, match="b.png"):
        Archive.open(dest).read_latent(row)


def test_shards_are_never_reused_even_when_orphaned(dest):
    arc = new_archive(dest)
    bucket = arc.bucket_name(8, *SHAPE)
    first = arc.allocate_shards(bucket, 3)
    assert arc.allocate_shards(bucket, 1) == first + 3
    # a killed run wrote shard 7 without ever committing it, and its allocation record was lost
    arc.write_shard(bucket, 7, encoded(2))
    arr = zarr.open_array(arc._latents.store, path=f"latents/{bucket}", mode="r+")
    arr.update_attributes({"next_shard": 0})
    assert Archive.open(dest, mode="a").allocate_shards(bucket, 2) == 8


def test_a_plan_gets_fresh_shards_in_order_with_one_allocation_per_bucket(tmp_path):
    arc = new_archive(str(tmp_path / "arc"))
    a, b = arc.bucket_name(8, *SHAPE), arc.bucket_name(16, *SHAPE)
    calls = []
    allocate = arc.allocate_shards
    arc.allocate_shards = lambda bucket, n: calls.append((bucket, n)) or allocate(bucket, n)
    wants = [(a, 8, *SHAPE), (b, 16, *SHAPE), (a, 8, *SHAPE), (a, 8, *SHAPE), (b, 16, *SHAPE)]
    first = arc.allocate_shards_for(wants)
    assert len(calls) == 2 and dict(calls) == {a: 3, b: 2}
    assert [first[0], first[2], first[3]] == [first[0], first[0] + 1, first[0] + 2] and first[4] == first[1] + 1
    again = Archive.open(str(tmp_path / "arc"), mode="a").allocate_shards_for(wants[:2])
    assert again[0] == first[3] + 1 and again[1] == first[4] + 1  # never handed out twice


def test_commit_is_atomic_object_and_idempotent(dest):
    arc = new_archive(dest)
    write_batch(arc, "batch-1", ["x/1.png", "x/2.png"])
    loc = open_location(dest)
    path = loc.path("catalog/batches/batch-1.jsonl.gz")
    before = loc.fs.cat_file(path)
    assert not arc.commit("batch-1", [CatalogRow(id="other.png", status="failed", reason="x")])
    assert loc.fs.cat_file(path) == before
    assert arc.is_committed("batch-1") and not arc.is_committed("batch-2")
    assert arc.get_row("other.png") is None and arc.get_row("missing.png") is None
    row = arc.get_row("x/2.png")
    assert row.batch_id == "batch-1" and row.chunks == [("tEXt", b"prompt\x00x/2.png")]
    assert not [p for p in loc.fs.find(loc.path("catalog")) if ".tmp-" in p]


def test_compaction_folds_batches_into_sorted_runs(dest):
    arc = new_archive(dest)
    ids = [f"img{i:03d}.png" for i in range(12)]
    for b in range(3):
        write_batch(arc, f"b{b}", ids[4 * b: 4 * b + 4], seed=b)
    summary = arc.compact()
    assert summary == {"batches": 3, "rows": 12, "generation": 1, "stepped_back": 0}
    assert arc.is_committed("b1") and not arc.commit("b1", [])
    write_batch(arc, "b3", ["late.png"], seed=9)
    assert {r.id for r in arc.rows()} == set(ids) | {"late.png"}
    assert Archive.open(dest).committed_ids() == set(ids) | {"late.png"}
    arc.compact()

    # a lookup needs only the run that holds its id: delete the other one and look again
    loc = open_location(dest)
    manifest = Archive.open(dest).catalog.manifest()
    assert manifest.generation == 2 and [r.rows for r in manifest.runs] == [1, 12]
    target = "img005.png"
    loc.fs.rm(loc.path(manifest.runs[0].key))
    fresh = Archive.open(dest)
    row = fresh.get_row(target)
    assert row is not None and row.id == target and row.batch_id == "b1"
    np.testing.assert_array_equal(fresh.read_latent(row).data, encoded(4, seed=1)[1].data)


def test_kept_originals_are_byte_identical_and_checked(dest):
    arc = new_archive(dest)
    blobs = {"k1.png": os.urandom(1000), "k2.png": os.urandom(37), "k3.png": b""}
    refs = arc.put_originals("b-kept", blobs)
    rows = [CatalogRow(id=i, status="kept", reason="alpha", source_size=len(d), original=refs[i],
                       source_sha256=hashlib.sha256(d).hexdigest()) for i, d in blobs.items()]
    arc.commit("b-kept", rows)
    reader = Archive.open(dest)
    for image_id, data in blobs.items():
        assert reader.read_original(reader.get_row(image_id)) == data
    bad = reader.get_row("k2.png")
    bad.source_sha256 = "0" * 64
    with pytest.raises(IntegrityError, match="k2.png"):
        reader.read_original(bad)
    sizes = reader.bytes_on_store()
    assert sizes["originals"] == 1037 and sizes["catalog"] > 0 and sizes["latents"] > 0


def test_concurrent_writers_each_own_their_shards(dest):
    arc = new_archive(dest, shard_size=3)
    bucket = arc.bucket_name(8, *SHAPE)
    first = arc.allocate_shards(bucket, 6)  # the driver hands out shards before tasks run
    batches = {f"w{k}": [f"w{k}/{j}.png" for j in range(3)] for k in range(6)}

    def task(k):
        worker_arc = Archive.open(dest, mode="a")  # each writer opens the archive itself
        return write_batch(worker_arc, f"w{k}", batches[f"w{k}"], seed=k, shard=first + k)

    with ThreadPoolExecutor(6) as pool:
        written = list(pool.map(task, range(6)))
    reader = Archive.open(dest)
    assert reader.committed_ids() == {i for ids in batches.values() for i in ids}
    for k, encs in enumerate(written):
        for image_id, enc in zip(batches[f"w{k}"], encs):
            np.testing.assert_array_equal(reader.read_latent(reader.get_row(image_id)).data, enc.data)


def test_job_records_round_trip(dest):
    arc = new_archive(dest)
    assert read_job_records(arc) == []
    job = write_job_record(arc, {"images_processed": 10, "seconds": 2.5})
    write_job_record(arc, {"job_id": "zz-later", "images_processed": 1, "seconds": 1.0})
    records = read_job_records(Archive.open(dest))
    assert [r["job_id"] for r in records] == [job, "zz-later"] and records[0]["images_processed"] == 10
    assert arc.loc.fs.exists(arc.loc.path("jobs", "zz-later.json"))  # the stored name (docs/archive-format.md)


def test_archive_pickles_by_reopening(dest):
    import pickle

    arc = new_archive(dest)
    write_batch(arc, "b0", ["p.png"])
    clone = pickle.loads(pickle.dumps(Archive.open(dest)))
    assert clone.url == dest and clone.get_row("p.png").index == 0
