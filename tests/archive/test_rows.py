"""Row serialisation: every field survives, references become mappings, chunks base64."""
import dataclasses
import json

from lbdask.archive.rows import CatalogRow, ChunksRef, OriginalRef, dump_rows, load_rows


def full_row() -> CatalogRow:
    """A row with every field set to something other than its default."""
    return CatalogRow(
        id="a/b.png", status="latent", reason="r", bucket="b8-c16-8x8", index=3, source_size=10, source_sha256="s",
        source_stamp="mtime:1", width=64, height=48, mode="RGBA", psnr=41.5, psnr_initial=39.0, refine_steps=5,
        model_fingerprint="f", bits=8, lo=[0.0, 1.0], hi=[2.0, 3.0], checksum="c", stored_bytes=99,
        chunks=[("gAMA", b"\x00\x01")], original=OriginalRef("originals/x.bin", 1, 2), device_class="cpu",
        decode_sha256="d", batch_id="b1", kept_format="png", kept_note="n", stored_sha256="t", lossy_distance=1.5,
        lossy_quality=60, lossy_bits=10, pixel=OriginalRef("pixels/y.bin", 3, 4), pixel_sha256="p",
        demote_floor=30.0, reencoded={"from": "g"},
        chunks_ref=ChunksRef("meta/b1.bin", 5, 6, sha256="h", types=("tEXt", "iTXt")))


def test_every_field_is_set_by_the_fixture():
    row, blank = full_row(), CatalogRow(id="x", status="kept")
    unset = [f.name for f in dataclasses.fields(CatalogRow) if f.name != "id" and getattr(row, f.name) == getattr(blank, f.name)]
    assert unset == []


def test_to_json_holds_every_field_as_asdict_would():
    row = full_row()
    expected = json.loads(json.dumps(dataclasses.asdict(row) | {"chunks": [["gAMA", "AAE="]]}))
    assert json.loads(json.dumps(row.to_json())) == expected


def test_rows_round_trip_through_a_batch_object():
    rows = [full_row(), CatalogRow(id="z", status="kept")]
    assert load_rows(dump_rows(rows)) == rows
