"""A source is listed as a stream in id order: a folder through the external sort (it walks in
no useful order), S3 page by page (it lists keys in order); a rerun merge-joins either with the
catalog without holding the listing (issue 25)."""
import pytest

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
