"""A source is listed as a stream in id order: a folder through the external sort (it walks in
no useful order), S3 page by page (it lists keys in order); a rerun merge-joins either with the
catalog without holding the listing (issue 25)."""
import os
import socket

import pytest
from fsspec.asyn import sync

from lbdask.archive import spill
from lbdask.errors import StoreError
from lbdask.representation import listing
from lbdask.representation.listing import iter_source_ids
from lbdask.storage import open_location

#: Walk order is not id order here: `a-b.png` < `a.png` < `a/x.png` ('-' < '.' < '/').
FOLDER = ["a/x.png", "a.png", "a-b.png", "z/y/q.png", "B.PNG", *(f"m/{n:02d}.png" for n in range(20))]


def test_a_folder_is_listed_in_id_order_through_the_spill(tmp_path, monkeypatch):
    src, spills = tmp_path / "src", tmp_path / "tmp"
    for name in [*FOLDER, "notes.txt", "dir.png/inner.txt"]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"x" * len(name))
    spills.mkdir()
    monkeypatch.setattr(spill, "CHUNK_ROWS", 4)
    monkeypatch.setattr(spill, "FANIN", 2)
    monkeypatch.setattr(listing.tempfile, "tempdir", str(spills))
    chunks = []
    monkeypatch.setattr(spill, "on_spill", chunks.append)
    entries = list(iter_source_ids(open_location(str(src))))
    assert [e.id for e in entries] == sorted(FOLDER)
    assert all(e.size == len(e.id) and e.stamp.startswith("mtime:") and e.refused is None for e in entries)
    assert max(chunks) == 4 and len(chunks) == 7  # never more than a chunk of entries gathered
    assert list(spills.iterdir()) == []  # the spill folder goes with the stream


def test_an_s3_source_is_streamed_page_by_page_in_key_order(s3_bucket, monkeypatch):
    loc = open_location(f"{s3_bucket}/src")
    names = ["b.png", "a/x.png", "a.png", "a-b.png", "c.PNG", "notes.txt"]
    for name in names:
        loc.fs.pipe_file(loc.path(name), b"x" * len(name))
    loc.fs.pipe_file(f"{s3_bucket}/srcother/d.png", b"x")  # beside the prefix, not below it
    monkeypatch.setattr(listing, "S3_PAGE_KEYS", 2)
    pages, real = [], listing.sync

    def one_page(*args, **kwargs):
        pages.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(listing, "sync", one_page)
    stream = iter_source_ids(loc)
    first = next(stream)
    assert first.id == "a-b.png" and len(pages) == 1  # the first entry before the rest is listed
    rest = list(stream)
    assert [e.id for e in [first, *rest]] == ["a-b.png", "a.png", "a/x.png", "b.png", "c.PNG"]
    assert all(e.stamp.startswith("etag:") and e.size == len(e.id) for e in rest) and len(pages) == 3


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_missing_source_is_refused_before_the_stream_starts(where, tmp_path, request):
    root = str(tmp_path) if where == "folder" else request.getfixturevalue("s3_bucket")
    with pytest.raises(StoreError, match="does not exist"):
        iter_source_ids(open_location(f"{root}/absent"))


def test_an_s3_source_at_a_bucket_root_or_below_a_folder_marker_lists_its_keys(s3_bucket):
    """A console's "create folder" leaves an empty object named like the prefix (`src/`)."""
    loc = open_location(s3_bucket)
    assert list(iter_source_ids(loc)) == []  # an empty bucket: a listing page without contents
    for key, body in [("src/", b""), ("src/a.png", b""), ("top.png", b"xy")]:
        sync(loc.fs.loop, loc.fs._call_s3, "put_object", Bucket=loc.root, Key=key, Body=body)
    loc.fs.invalidate_cache()
    assert [(e.id, e.size) for e in iter_source_ids(loc)] == [("src/a.png", 0), ("top.png", 2)]
    assert [(e.id, e.size) for e in iter_source_ids(open_location(f"{s3_bucket}/src"))] == [("a.png", 0)]


def s3_pages(monkeypatch, pages):
    """An S3 source whose listing returns `pages` (no server)."""
    loc = open_location("s3://bucket/src")
    monkeypatch.setattr(loc.fs, "exists", lambda path: True)
    monkeypatch.setattr(listing, "sync", lambda *args, **kwargs: pages.pop(0))
    return loc


@pytest.mark.parametrize("keys", [["b.png", "a.png"], ["a.png", "a.png"]])
def test_an_s3_listing_out_of_key_order_is_an_error_not_a_wrong_answer(keys, monkeypatch):
    loc = s3_pages(monkeypatch, [{"Contents": [{"Key": f"src/{k}", "Size": 1} for k in keys]}])
    with pytest.raises(StoreError, match=r"cannot list source s3://bucket/src: keys out of order \('(a|b).png'"):
        list(iter_source_ids(loc))


def test_an_s3_source_the_store_refuses_to_list_is_a_store_error_naming_it(monkeypatch):
    loc = open_location("s3://bucket/src")

    def denied(*args, **kwargs):
        raise PermissionError("Access Denied")

    monkeypatch.setattr(loc.fs, "exists", denied)
    with pytest.raises(StoreError, match="cannot list source s3://bucket/src: Access Denied"):
        iter_source_ids(loc)
    loc = s3_pages(monkeypatch, [])
    monkeypatch.setattr(listing, "sync", denied)
    with pytest.raises(StoreError, match="cannot list source s3://bucket/src: Access Denied"):
        list(iter_source_ids(loc))


def test_an_s3_stamp_is_the_etag_without_its_quotes_else_the_modification_time():
    """A rerun compares the stamps of earlier runs for equality: their form must not drift."""
    etag = '"9a0364b9e99bb480dd25e1f0284c8555"'
    assert listing.remote_stamp({"ETag": etag, "LastModified": "t"}) == "etag:9a0364b9e99bb480dd25e1f0284c8555"
    assert listing.remote_stamp({"LastModified": "2026-12-07 20:00:00+00:00"}) == "mtime:2026-12-07 20:00:00+00:00"
    assert listing.remote_stamp({}) is None


def test_a_subfolder_that_cannot_be_read_fails_the_listing_naming_it(tmp_path, monkeypatch):
    """Not its images silently left out (what `os.walk` does without `onerror`)."""
    (tmp_path / "ok.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "hidden.png").write_bytes(b"x")
    real = os.scandir

    def scandir(path="."):  # what a folder without read permission gives a user other than root
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(StoreError, match=r"cannot list source folder \S*/locked: Permission denied"):
        list(iter_source_ids(open_location(str(tmp_path))))


def test_a_socket_a_fifo_a_broken_link_and_a_link_to_a_folder_inside_src_are_refused_by_kind(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub.png").symlink_to(tmp_path / "sub", target_is_directory=True)
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")
    os.mkfifo(tmp_path / "f.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s.png"))
        refused = {e.id: e.refused for e in iter_source_ids(open_location(str(tmp_path)))}
    assert refused == {"s.png": "not a regular file: a socket", "sub.png": "symlink to a directory",
                       "f.png": "not a regular file: a fifo", "gone.png": "broken symlink"}
