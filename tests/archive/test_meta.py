"""Large PNG metadata leaves the catalog rows: a commit writes it into `meta/<batch_id>.bin`, the
row keeps a reference, reads restore every chunk byte for byte and in order, damage names the
object, and rows written before (inline chunks) still read. Hand-made archives (no model);
the migration end to end is in tests/migrate/test_png_metadata.py."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import INLINE_MAX, frame, row_chunks, unframe, with_chunks
from lbdask.archive.repair import diagnose
from lbdask.archive.rows import ChunksRef, OriginalRef
from lbdask.errors import IntegrityError, StoreError
from tests.support.archive import line_size, new_archive

WORKFLOW = ("tEXt", b"workflow\x00" + b'{"nodes": [1, 2, 3]} ' * 300)  # ~6.3 KB, as a ComfyUI workflow
ICC = ("iCCP", b"sRGB\x00\x00" + bytes(range(256)) * 2)
PROMPT = ("iTXt", b"prompt\x00\x00\x00\x00\x00a girl in a field")
CHUNKS = [PROMPT, WORKFLOW, ICC, ("zTXt", b"comment\x00\x00x\x9c\x03\x00\x00\x00\x00\x01")]
B1 = Archive.batch_object("meta", "b1")  # the PNG metadata object of batch b1


def row(image_id: str, chunks) -> CatalogRow:
    return CatalogRow(id=image_id, status="kept", source_size=1000, width=64, height=64, mode="RGB",
                      chunks=list(chunks))


@pytest.fixture
def arc(tmp_path):
    return new_archive(str(tmp_path / "arc"))


def test_frame_is_the_png_chunk_layout_and_unframe_names_damage():
    blob = frame(CHUNKS)
    assert unframe(blob, "x") == CHUNKS
    assert blob.startswith(len(PROMPT[1]).to_bytes(4, "big") + b"iTXt" + PROMPT[1])
    assert len(blob) == sum(12 + len(d) for _, d in CHUNKS)
    for bad in (blob[:-1], blob[:5], blob[:40] + b"\xff" + blob[41:]):
        with pytest.raises(IntegrityError, match="meta/b1.bin holds no valid PNG chunk at byte"):
            unframe(bad, "meta/b1.bin")


def test_a_commit_moves_large_chunks_into_one_object_and_reads_restore_them_in_order(dest):
    arc = new_archive(dest)  # a folder and the local S3 server
    small = [("tEXt", b"Software\x00lbdask"), ("tEXt", b"Title\x00" + b"t" * (INLINE_MAX - 30))]
    assert arc.commit("b1", [row("big.png", CHUNKS), row("small.png", small), row("two.png", [WORKFLOW, PROMPT])])
    big, kept_small, two = (arc.get_row(i) for i in ("big.png", "small.png", "two.png"))
    assert kept_small.chunks == small and kept_small.chunks_ref is None  # tiny chunks stay inline
    for stored, chunks in ((big, CHUNKS), (two, [WORKFLOW, PROMPT])):
        assert stored.chunks == [] and stored.chunks_ref.key == B1 and B1.startswith("meta/") and B1.endswith("/b1.bin")
        assert stored.chunk_types == [t for t, _ in chunks]
        assert row_chunks(arc, stored) == chunks
        assert with_chunks(arc, stored).chunks == chunks and with_chunks(arc, stored).chunks_ref is None
    assert two.chunks_ref.offset == big.chunks_ref.size  # one object for the batch, one range per row
    assert arc.loc.fs.size(arc.loc.path(B1)) == big.chunks_ref.size + two.chunks_ref.size
    assert arc.bytes_on_store()["meta"] == big.chunks_ref.size + two.chunks_ref.size
    # the serialized row is small: the 6.7 KB of chunks are not in it, base64 or otherwise
    assert line_size(big) < 1024 < line_size(row("big.png", CHUNKS)) - 8000


def test_a_batch_without_large_chunks_writes_no_metadata_object(arc):
    assert arc.commit("b1", [row("a.png", [PROMPT]), row("b.png", [])])
    assert arc.get_row("a.png").chunks == [PROMPT]
    assert not os.path.exists(arc.loc.path("meta"))


@pytest.mark.parametrize("damage", ["missing", "changed", "short"])
def test_a_missing_or_damaged_metadata_object_is_an_integrity_error_naming_it(arc, damage):
    arc.commit("b1", [row("big.png", CHUNKS)])
    stored, path = arc.get_row("big.png"), arc.loc.path(B1)
    if damage == "missing":
        os.remove(path)
    else:
        data = bytearray(Path(path).read_bytes())
        data[100] ^= 1
        Path(path).write_bytes(data if damage == "changed" else data[:-10])
    with pytest.raises(IntegrityError, match=rf"PNG metadata of 'big.png': object {B1} .*(missing|truncated|sha256)"):
        row_chunks(arc, stored)


def test_rows_written_before_keep_their_inline_chunks_and_read():
    old = row("old.png", CHUNKS).to_json()
    del old["chunks_ref"]  # as the code before this field wrote it
    back = CatalogRow.from_json(json.loads(json.dumps(old)))
    assert back.chunks_ref is None and back.chunk_types == ["iTXt", "tEXt", "iCCP", "zTXt"]
    assert row_chunks(None, back) == CHUNKS and with_chunks(None, back) is back  # no store read


def test_a_reference_survives_json_and_rows_list_every_object_they_reference():
    ref = ChunksRef("meta/b1.bin", 10, 20, "ab" * 32, ("tEXt", "iCCP"))
    original, pixel = OriginalRef("originals/b1.bin", 0, 5), OriginalRef("pixels/rt1.bin", 0, 9)
    r = dataclasses.replace(row("a.png", []), chunks_ref=ref, original=original, pixel=pixel)
    assert CatalogRow.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.object_refs() == [("stored copy", original), ("pixel copy", pixel), ("PNG metadata", ref)]
    assert row("b.png", CHUNKS).object_refs() == []


def test_repair_names_rows_whose_metadata_object_is_missing_or_short(arc):
    assert arc.commit("b1", [row("big.png", CHUNKS), row("two.png", [WORKFLOW])])
    arc.compact()
    assert list(diagnose(arc).data) == []
    path = arc.loc.path(B1)
    blob = arc.loc.fs.cat_file(path)
    arc.loc.fs.pipe_file(path, blob[: arc.get_row("two.png").chunks_ref.offset + 1])  # the second range cut short
    assert list(diagnose(arc).data) == [f"two.png: PNG metadata object {B1} is missing or truncated"]
    arc.loc.fs.rm_file(path)
    assert [line.split(":")[0] for line in diagnose(arc).data] == ["big.png", "two.png"]


def test_metadata_of_an_archive_that_is_gone_is_a_store_error_not_a_missing_object(arc):
    assert arc.commit("b1", [row("big.png", CHUNKS)])
    stored = arc.get_row("big.png")
    os.rename(arc.loc.path(""), arc.loc.path("").rstrip("/") + ".moved")
    with pytest.raises(StoreError, match="zarr.json is gone"):
        row_chunks(arc, stored)
