"""The S3 side of `src/lbdask/archive/objects.py` against the local S3 server (moto over HTTP):
whole-object writes, the conditional create the catalog's compare-and-swap stands on, the
HTTP status found through s3fs's error wrapping, and removal. Written to kill the mutants
of these paths (docs/testing.md, "S3-only paths")."""
import os
import tempfile

import pytest
from botocore.exceptions import ClientError

from lbdask.archive import objects
from lbdask.archive.objects import PRECONDITION_FAILED, _status, put_atomic, put_exclusive, put_streamed, remove_quietly
from lbdask.storage import open_location


@pytest.fixture
def loc(s3_bucket):
    return open_location(s3_bucket + "/arc")


def read(loc, name):
    loc.fs.invalidate_cache()
    return loc.fs.cat_file(loc.path(name))


def test_put_atomic_writes_and_replaces_the_whole_object(loc):
    put_atomic(loc, loc.path("x", "obj"), b"first")
    assert read(loc, "x/obj") == b"first"
    put_atomic(loc, loc.path("x", "obj"), b"second, longer")
    assert read(loc, "x/obj") == b"second, longer"


def test_put_exclusive_creates_once_and_never_overwrites(loc):
    assert put_exclusive(loc, loc.path("m", "0001.json"), b"mine") is True
    assert read(loc, "m/0001.json") == b"mine"
    assert put_exclusive(loc, loc.path("m", "0001.json"), b"theirs") is False
    assert read(loc, "m/0001.json") == b"mine"
    assert put_exclusive(loc, loc.path("m", "0002.json"), b"next") is True  # another name is free
    assert read(loc, "m/0002.json") == b"next"


def test_a_listing_after_put_exclusive_shows_the_new_object(loc):
    """The new manifest must be listed at once, though this process cached the folder before."""
    put_atomic(loc, loc.path("m", "0001.json"), b"1")
    assert len(loc.fs.ls(loc.path("m"), detail=False)) == 1  # s3fs caches this listing
    assert put_exclusive(loc, loc.path("m", "0002.json"), b"2")
    assert sorted(p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path("m"), detail=False)) == ["0001.json", "0002.json"]


def test_a_conditional_put_failing_for_another_reason_is_raised_not_taken_as_lost_race(s3_bucket):
    gone = open_location(s3_bucket + "-missing/arc")  # NoSuchBucket: 404, not 412
    with pytest.raises(Exception) as info:  # noqa: PT011 - s3fs translates to various types
        put_exclusive(gone, gone.path("m", "0001.json"), b"x")
    assert _status(info.value) == 404


def test_status_walks_the_cause_and_context_chain():
    refused = ClientError({"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}},
                          "PutObject")
    assert _status(refused) == PRECONDITION_FAILED == 412
    only_context = OSError("translated")
    only_context.__context__ = refused
    assert _status(only_context) == 412
    only_cause = OSError("translated")
    only_cause.__cause__ = refused
    assert _status(only_cause) == 412
    twice = OSError("outer")
    twice.__cause__ = only_context
    assert _status(twice) == 412
    not_a_dict = OSError("aiohttp")
    not_a_dict.response = "a response object"  # not botocore's dict: keep walking
    not_a_dict.__cause__ = refused
    assert _status(not_a_dict) == 412
    no_metadata = OSError("odd")
    no_metadata.response = {"Error": {}}
    assert _status(no_metadata) is None
    assert _status(OSError("no response")) is None


def test_remove_quietly_removes_every_object_and_tolerates_missing_ones(loc):
    for name in ("a", "b", "c"):
        put_atomic(loc, loc.path("d", name), name.encode())
    remove_quietly(loc, iter([loc.path("d", "a"), loc.path("d", "b"), loc.path("d", "gone")]))  # any iterable
    loc.fs.invalidate_cache()
    assert [p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path("d"), detail=False)] == ["c"]
    remove_quietly(loc, [])
    remove_quietly(loc, [loc.path("d", "gone")])
    assert read(loc, "d/c") == b"c"


def test_put_streamed_uploads_the_whole_spool_or_nothing(loc, monkeypatch):
    spools = []
    real_mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        spools.append(real_mkstemp(*args, **kwargs))
        return spools[-1]

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    with put_streamed(loc, loc.path("r", "run")) as f:
        f.write(b"part one, ")
        f.write(b"part two")
    assert read(loc, "r/run") == b"part one, part two"
    with pytest.raises(RuntimeError), put_streamed(loc, loc.path("r", "broken")) as f:
        f.write(b"half")
        raise RuntimeError
    loc.fs.invalidate_cache()
    assert not loc.fs.exists(loc.path("r", "broken"))
    assert len(spools) == 2 and not any(os.path.exists(path) for _, path in spools)  # spool files removed


def test_put_streamed_uploads_a_large_spool_in_parts(loc, monkeypatch):
    monkeypatch.setattr(objects, "UPLOAD_PART_BYTES", 5 << 20)  # S3's smallest part
    calls = []
    real_call = loc.fs._call_s3

    async def recording_call(method, *args, **kwargs):
        calls.append(method)
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(loc.fs, "_call_s3", recording_call)
    data = os.urandom(1 << 20) * 11
    with put_streamed(loc, loc.path("r", "large")) as f:
        f.write(data)
    assert calls.count("upload_part") == 3 and "complete_multipart_upload" in calls
    monkeypatch.undo()
    assert read(loc, "r/large") == data
