"""Kept formats (lbdask.image.kept, lbdask.image.pngsamples) and the representation chooser."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import imagecodecs
import numpy as np
import pytest
from PIL import Image

import lbdask
from lbdask.archive import Archive, CatalogRow
from lbdask.fidelity.chooser import Option, choose
from lbdask.image import kept, pngio, pngsamples
from lbdask.image.quality import psnr
from lbdask.verify import verify_kept
from tests.support.cluster import grainy
from tests.support.modes import SOURCES, pil_png, textured


def pil_view(png: bytes):
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return im.mode, np.asarray(im).copy(), dict(im.text), im.info.get("transparency")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_jxl_copy_reads_back_with_the_sources_samples_mode_depth_and_chunks(name):
    png = SOURCES[name]()
    data, pixels = kept.jxl_object(png, effort=3)
    back = kept.to_png(data, "jxl")
    assert np.array_equal(pngsamples.samples(back), pngsamples.samples(png))
    assert pngsamples.samples(back).dtype == pixels.dtype
    assert pngsamples.header(back) == pngsamples.header(png)
    assert pngio.probe(back).chunks == pngio.probe(png).chunks  # text and ICC chunks, raw
    mode, arr, text, trns = pil_view(png)
    assert pil_view(back)[0] == mode and np.array_equal(pil_view(back)[1], arr)
    assert pil_view(back)[2] == text and pil_view(back)[3] == trns
    assert kept.mismatch(pixels, back) is None


def test_encode_kept_uses_jxl_when_smaller_and_keeps_the_png_otherwise():
    png = SOURCES["RGB 16-bit"]()
    obj = kept.encode_kept(png, "jxl", effort=3)
    assert obj.format == "jxl" and len(obj.data) < len(png) and obj.note is None
    assert obj.pixels_sha256 == kept.samples_sha256(pngsamples.samples(png))
    flat = pil_png(Image.fromarray(np.zeros((40, 40, 3), np.uint8)))
    small = kept.encode_kept(flat, "jxl", effort=3)
    assert small.format == "png" and small.data is flat and "not smaller" in small.note
    assert kept.encode_kept(png, "png").data is png


def test_a_jxl_copy_that_does_not_round_trip_keeps_the_png(monkeypatch):
    png = SOURCES["RGB 16-bit"]()
    real = imagecodecs.jpegxl_decode

    def one_sample_off(data, *a, **kw):
        out = np.array(real(data, *a, **kw))
        out.flat[5] ^= 1
        return out

    monkeypatch.setattr(kept.imagecodecs, "jpegxl_decode", one_sample_off)
    obj = kept.encode_kept(png, "jxl", effort=3)
    assert obj.format == "png" and obj.data is png
    assert obj.note == "jxl round trip not pixel-identical: 1 sample(s) differ after the round trip"


def test_corrupt_jxl_object_is_an_integrity_error():
    data, _ = kept.jxl_object(SOURCES["L"](), effort=3)
    with pytest.raises(lbdask.errors.IntegrityError):
        kept.to_png(b"XXXXXXXX" + data[8:], "jxl")
    with pytest.raises(lbdask.errors.IntegrityError):
        kept.to_png(data[:-20], "jxl")


@pytest.mark.parametrize("options, min_psnr, ratio, winner", [
    ([Option("png", 100), Option("latent", 40, 33.0)], 30, 1.0, "latent"),
    ([Option("png", 100), Option("latent", 40, 29.0)], 30, 1.0, "png"),           # latent below the floor
    ([Option("jxl", 60), Option("png", 100), Option("latent", 70, 35.0)], 30, 1.0, "jxl"),  # no-saving vs jxl
    ([Option("jxl", 60), Option("latent", 40, 35.0)], 30, 0.5, "jxl"),            # ratio: 40 > 0.5 x 60
    ([Option("jxl", 60), Option("latent", 40, 35.0), Option("jxl-lossy", 10, 30.5)], 30, 1.0, "jxl-lossy"),
    ([Option("jxl", 60), Option("latent", 40, 35.0), Option("jxl-lossy", 10, 29.9)], 30, 1.0, "latent"),
    ([Option("png", 50), Option("latent", 50, 40.0)], 30, 1.0, "png"),           # tie: the exact copy
])
def test_chooser_picks_the_smallest_representation_that_meets_the_policy(options, min_psnr, ratio, winner):
    assert choose(options, min_psnr, ratio).representation == winner


def test_chooser_needs_an_exact_copy():
    with pytest.raises(ValueError):
        choose([Option("latent", 10, 40.0)], 30)


def test_lossy_search_just_meets_the_floor():
    rgb = grainy(1, 96)
    for floor in (34.0, 36.0):
        found = kept.search_lossy(rgb, floor)
        back = kept.lossy_decode(found.data)
        assert psnr(rgb, back) == pytest.approx(found.psnr) and found.psnr >= floor
        assert found.decode_sha256 == kept.samples_sha256(back)
        if found.distance < kept.LOSSY_DISTANCES[1]:  # a little further would have missed the floor
            _, further = kept._lossy_try(rgb, found.distance * 1.3, 3)
            assert further < floor + 1.5
    assert kept.search_lossy(rgb, 200.0) is None
    png = kept.lossy_to_png(found.data, True, [("tEXt", b"parameters\0x")])
    mode, arr, text, _ = pil_view(png)
    assert mode == "RGBA" and (arr[..., 3] == 255).all() and text == {"parameters": "x"}


def _kept_row(image_id: str, png: bytes, **extra) -> CatalogRow:
    info = pngio.probe(png)
    return CatalogRow(id=image_id, status="kept", reason="palette", source_size=len(png),
                      source_sha256=hashlib.sha256(png).hexdigest(), width=info.width, height=info.height,
                      mode=info.mode, chunks=list(info.chunks), batch_id="keep-0", **extra)


def test_archive_rows_without_a_kept_format_still_read_as_png(tmp_path):
    """Rows written before kept formats existed have no kept_format (None / absent key)."""
    png = SOURCES["P+tRNS"]()
    old = {k: v for k, v in _kept_row("a.png", png).to_json().items()
           if k not in ("kept_format", "kept_note", "stored_sha256", "lossy_distance")}
    row = CatalogRow.from_json(json.loads(json.dumps(old)))
    assert row.kept_format is None and row.representation == "png"
    arc = Archive.create(str(tmp_path / "arc"), {"name": "taef2", "fingerprint": "f"})
    row.original = arc.put_originals("keep-0", {"a.png": png})["a.png"]
    arc.commit("keep-0", [row])
    assert lbdask.open(str(tmp_path / "arc")).read("a.png") == png
    assert verify_kept(Archive.open(str(tmp_path / "arc")), row) == []


def test_jxl_kept_row_reads_and_verifies_and_a_damaged_copy_is_caught(tmp_path):
    png = SOURCES["RGBA 16-bit"]()
    obj = kept.encode_kept(png, "jxl", effort=3)
    arc = Archive.create(str(tmp_path / "arc"), {"name": "taef2", "fingerprint": "f"})
    ref = arc.put_originals("keep-0", {"a.png": obj.data})["a.png"]
    row = _kept_row("a.png", png, original=ref, kept_format="jxl", decode_sha256=obj.pixels_sha256,
                    stored_sha256=hashlib.sha256(obj.data).hexdigest(), stored_bytes=len(obj.data))
    arc.commit("keep-0", [row])
    back = lbdask.open(str(tmp_path / "arc")).read("a.png")
    assert np.array_equal(pngsamples.samples(back), pngsamples.samples(png)) and back != png
    assert verify_kept(arc, row) == []
    wrong = dataclasses.replace(row, decode_sha256="0" * 64)
    assert verify_kept(arc, wrong) == ["a.png: jxl copy does not decode to the recorded samples"]


def test_serving_reads_kept_and_lossy_rows_as_the_reader_does(tmp_path):
    """src/lbdask/serve/archives.py and lbdask.reader share lbdask.image.kept.read_back: the same bytes."""
    import asyncio
    import contextlib

    from lbdask.serve.settings import ServeSettings
    from lbdask.serve.worker import ServingWorker

    png = SOURCES["RGBA 16-bit"]()
    obj = kept.encode_kept(png, "jxl", effort=3)
    rgb = textured(3)
    lossy = kept.search_lossy(rgb, 30.0, effort=3)
    rgb_png = pngio.encode(rgb, None, [])
    dest = str(tmp_path / "arc")
    arc = Archive.create(dest, {"name": "taef2", "fingerprint": "f"})
    refs = arc.put_originals("keep-0", {"a.png": obj.data, "b.png": lossy.data})
    rows = [_kept_row("a.png", png, original=refs["a.png"], kept_format="jxl", decode_sha256=obj.pixels_sha256,
                      stored_sha256=hashlib.sha256(obj.data).hexdigest(), stored_bytes=len(obj.data)),
            CatalogRow(id="b.png", status="lossy", reason="lossy-smaller", source_size=len(rgb_png),
                       source_sha256=hashlib.sha256(rgb_png).hexdigest(), width=rgb.shape[1], height=rgb.shape[0],
                       mode="RGB", batch_id="keep-0", original=refs["b.png"], kept_format="jxl",
                       stored_sha256=hashlib.sha256(lossy.data).hexdigest(), stored_bytes=len(lossy.data),
                       lossy_distance=lossy.distance, psnr=lossy.psnr, decode_sha256=lossy.decode_sha256)]
    arc.commit("keep-0", rows)
    local = lbdask.open(dest)
    rt = ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(None))
    try:
        for image_id in ("a.png", "b.png"):
            assert asyncio.run(rt.read(dest, image_id)) == local.read(image_id)
    finally:
        rt.close()
    assert np.array_equal(pngsamples.samples(local.read("a.png")), pngsamples.samples(png))
    assert psnr(rgb, pngio.decode(local.read("b.png"), 10**8)[0]) >= 30


def test_fidelity_report_shows_where_each_representation_wins():
    from lbdask.fidelity.rate_distortion import Measurement
    from lbdask.fidelity.wins import lossy_method, where_each_wins, wins_table

    def m(method, image, size, db=float("inf")):
        return Measurement(method, "x", image, size, db, 1.0)

    rows = [m("png max", "a", 100), m("jpegxl lossless", "a", 70), m("latent 8-bit, 0 steps", "a", 40, 33.0),
            m(lossy_method(30), "a", 10, 30.2), m(lossy_method(38), "a", 50, 38.1),
            m("png max", "b", 100), m("jpegxl lossless", "b", 120), m("latent 8-bit, 0 steps", "b", 40, 29.0)]
    wins = where_each_wins(rows, (30.0, 38.0), ["latent 8-bit, 0 steps"])
    assert [w["winners"] for w in wins] == [{"a": "jxl-lossy", "b": "png"}, {"a": "jxl-lossy", "b": "png"}]
    assert wins[0]["bytes_mean"] == 55 and wins[1]["wins"] == {"jxl-lossy": 1, "png": 1}
    assert "| 30 | latent 8-bit, 0 steps | 0 | 1 | 0 | 1 | 55 |" in wins_table(wins)


def test_codec_errors_and_huge_images_keep_the_png(monkeypatch):
    png = SOURCES["RGB 16-bit"]()
    assert kept.encode_kept(png, "jxl", effort=3, max_pixels=100).note == "jxl: more than 100 pixels"

    def broken(*a, **kw):
        raise RuntimeError("JxlEncoderProcessOutput failed")

    monkeypatch.setattr(kept.imagecodecs, "jpegxl_encode", broken)
    obj = kept.encode_kept(png, "jxl", effort=3)
    assert obj.format == "png" and obj.data is png and obj.note == "jxl failed: RuntimeError: JxlEncoderProcessOutput failed"


def test_report_text_says_how_many_kept_rows_are_jpeg_xl():
    from lbdask.cli.report import kept_text

    rep = {"images_kept_png": 5, "representations": {"jxl": {"images": 3}, "png": {"images": 2}}}
    assert kept_text(rep) == "5 kept (2 PNG, 3 lossless JPEG XL)"
    assert kept_text({"images_kept_png": 4, "representations": {"jxl": {"images": 0}}}) == "4 kept as PNG"
