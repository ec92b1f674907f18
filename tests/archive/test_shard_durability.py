"""Latent shards on a folder are on the disk (file and directory fsynced) before the commit
that references them, through the Zarr store `lbdask.archive.durable_store`."""
import os

import numpy as np
import pytest

from lbdask.archive import Archive
from lbdask.archive.durable_store import DurableLocalStore
from lbdask.errors import StoreError
from tests.support.archive import SHAPE, new_archive, write_batch


@pytest.fixture
def fsynced(monkeypatch):
    """Every path os.fsync is called on, in order (a directory ends with '/')."""
    seen = []
    real = os.fsync

    def record(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        seen.append(path + "/" if os.path.isdir(path) else path)
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return seen


def shard_file(dest, bucket, shard):
    folder = os.path.join(dest, "latents", bucket, "c", str(shard))
    [path] = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files]
    return path


def test_a_shard_and_its_folder_are_fsynced_before_the_batch_commits(tmp_path, fsynced):
    dest = str(tmp_path / "arc")
    arc = new_archive(dest)
    assert isinstance(arc._latents.store, DurableLocalStore)
    bucket = arc.bucket_name(8, *SHAPE)
    arc.ensure_bucket(bucket, 8, *SHAPE)
    fsynced.clear()
    write_batch(arc, "b0", ["a.png", "b.png"], shard=arc.allocate_shards(bucket, 1))
    shard = shard_file(dest, bucket, 0)
    commit = next(i for i, p in enumerate(fsynced) if "/catalog/batches/b0" in p)
    # the data is fsynced under its temporary name, renamed, then the folder is fsynced
    data = [i for i, p in enumerate(fsynced) if p.startswith(shard + ".tmp-")]
    folder = [i for i, p in enumerate(fsynced) if p == os.path.dirname(shard) + "/"]
    assert data and folder and data[0] < folder[-1] < commit, fsynced
    assert not [p for p in os.listdir(os.path.dirname(shard)) if ".tmp-" in p]  # no temporary left


def test_a_crash_while_a_shard_is_made_durable_commits_nothing_and_a_rerun_completes(tmp_path, monkeypatch):
    dest = str(tmp_path / "arc")
    arc = new_archive(dest)
    bucket = arc.bucket_name(8, *SHAPE)
    arc.ensure_bucket(bucket, 8, *SHAPE)
    real = os.fsync

    def power_cut(fd):
        if "/latents/" in os.readlink(f"/proc/self/fd/{fd}") and "/c/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(StoreError, match="Input/output error"):
        write_batch(arc, "b0", ["a.png"], shard=arc.allocate_shards(bucket, 1))
    assert Archive.open(dest).get_row("a.png") is None and not Archive.open(dest).is_committed("b0")
    monkeypatch.setattr(os, "fsync", real)
    again = Archive.open(dest, mode="a")
    encs = write_batch(again, "b0", ["a.png"], shard=again.allocate_shards(bucket, 1))
    row = Archive.open(dest).get_row("a.png")
    assert row.index >= again.shard_size  # a fresh shard: the torn one is never reused
    np.testing.assert_array_equal(Archive.open(dest).read_latent(row).data, encs[0].data)


def test_a_folder_another_writer_makes_at_the_same_moment_is_used(tmp_path, monkeypatch):
    """Workers write shards of one bucket at once: both may find a folder missing and make it."""
    from lbdask.archive import objects

    real = os.mkdir

    def other_writer_first(path, *args, **kwargs):
        real(path)  # made by another writer between our check and our mkdir
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", other_writer_first)
    objects.replace_durably(str(tmp_path / "a" / "b" / "obj"), b"x")
    assert (tmp_path / "a" / "b" / "obj").read_bytes() == b"x"


def test_new_folders_and_a_created_name_are_fsynced_into_their_parents(tmp_path, fsynced, monkeypatch):
    from lbdask.archive import objects

    root = os.path.realpath(tmp_path)
    assert objects.create_durably(os.path.join(root, "a", "b", "m"), b"1")
    assert f"{root}/" in fsynced and f"{root}/a/" in fsynced  # the entries of the new a/ and a/b/
    assert fsynced[-1] == f"{root}/a/b/"  # the created name, after its data
    monkeypatch.chdir(root)
    fsynced.clear()
    objects.replace_durably("top.bin", b"2")  # a relative name: its folder is the current one
    assert fsynced[-1] == f"{root}/"
