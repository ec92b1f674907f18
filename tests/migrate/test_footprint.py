"""A job's "what this job added to the store" figure (`migrate.footprint`) is measured on the
objects the job can change and equals a du's difference (the migration itself:
tests/migrate/test_rerun.py, which also counts its listings)."""
from lbdask.archive import Archive, CatalogRow
from lbdask.migrate.footprint import Footprint
from tests.support.archive import MODEL, SHAPE, new_archive, write_batch

PROMPT = [("tEXt", b"prompt\x00" + b"a grainy gradient " * 40)]  # above INLINE_MAX: goes to meta/


def test_the_footprint_of_a_job_equals_the_du_difference(dest):
    """On a folder and S3: a job rewriting an object a killed job left, committing batches into
    fresh shards and PNG metadata, and folding them with a batch left unfolded before it."""
    arc = new_archive(dest)
    write_batch(arc, "old", ["a", "b"])
    arc.compact()
    arc.put_originals("j1", {"x": b"left by a killed job " * 20})
    write_batch(arc, "pending", ["p"])
    before = arc.bytes_on_store()
    footprint = Footprint(arc)
    bucket = arc.bucket_name(8, *SHAPE)
    first = arc.allocate_shards(bucket, 2)
    footprint.plan(["j1", "j2", "j3"], [(bucket, first), (bucket, first + 1)])
    arc.put_originals("j1", {"x": b"kept"})
    write_batch(arc, "j1", ["x1", "x2"], shard=first)
    write_batch(arc, "j2", ["y1"], seed=1, shard=first + 1)
    assert arc.commit("j3", [CatalogRow(id="z", status="failed", reason="z", chunks=PROMPT)])
    arc.compact()
    after = arc.bytes_on_store()
    added = footprint.added()
    assert added == {part: after[part] - before[part] for part in after}
    assert added["originals"] < 0 < added["latents"] and added["catalog"] > 0 and added["meta"] > 0


def test_the_footprint_of_a_first_job_counts_the_bucket_it_creates(tmp_path):
    """The job that meets a new image shape creates its bucket (Zarr metadata) after the
    footprint's start, as `migrate` does: counted like the shards written into it."""
    arc = Archive.create(str(tmp_path / "arc"), MODEL, shard_size=4)
    before = arc.bytes_on_store()
    footprint = Footprint(arc)
    bucket = arc.bucket_name(8, *SHAPE)
    arc.ensure_bucket(bucket, 8, *SHAPE)
    first = arc.allocate_shards(bucket, 1)
    footprint.plan(["j1"], [(bucket, first)])
    write_batch(arc, "j1", ["x1", "x2"], shard=first)
    arc.compact()
    after = arc.bytes_on_store()
    assert footprint.added() == {part: after[part] - before[part] for part in after}
