"""Lossy AVIF copies (`lbdask.image.avif`, `kept.search_avif`) and the `--lossy-fallback`
policies (`kept.search_fallback`): each candidate counts only by its real decode."""
from __future__ import annotations

import numpy as np
import pytest

from lbdask.errors import IntegrityError
from lbdask.image import avif, kept, pngio
from lbdask.image.quality import psnr
from tests.support.cluster import grainy

RGB = grainy(1, 96)


@pytest.mark.parametrize("bits", avif.AVIF_BITS)
def test_avif_search_just_meets_the_floor(bits):
    found = kept.search_avif(RGB, 36.0, bits)
    back = avif.decode(found.data)
    assert (found.format, found.bits, found.distance) == ("avif", bits, None)
    assert back.dtype == np.uint8 and back.shape == RGB.shape
    assert psnr(RGB, back) == pytest.approx(found.psnr) and found.psnr >= 36.0
    assert found.decode_sha256 == kept.samples_sha256(back) == kept.samples_sha256(kept.lossy_decode(found.data, "avif"))
    assert 0 < found.quality  # one level lower misses the floor: the search found the lowest
    assert psnr(RGB, avif.decode(avif.encode(RGB, found.quality - 1, bits))) < 36.0
    assert kept.search_avif(RGB, 200.0, bits) is None


def test_best_is_the_smallest_passing_candidate_of_jpeg_xl_and_avif():
    """On this image lossy JPEG XL wins at 30 dB and AVIF at 36 dB: `best` follows."""
    winners = set()
    for floor in (30.0, 36.0):
        candidates = [kept.search_lossy(RGB, floor), *(kept.search_avif(RGB, floor, b) for b in avif.AVIF_BITS)]
        smallest = min(candidates, key=lambda c: len(c.data))
        assert len({len(c.data) for c in candidates}) > 1
        best = kept.search_fallback(RGB, "best", floor)
        assert best == smallest and best.psnr >= floor
        winners.add(best.format)
        assert kept.search_fallback(RGB, "jxl", floor).format == "jxl"
        assert kept.search_fallback(RGB, "avif", floor) == min(candidates[1:], key=lambda c: len(c.data))
    assert winners == {"jxl", "avif"}
    assert kept.search_fallback(RGB, "best", 200.0) is None


def test_lossy_objects_decode_by_their_recorded_format():
    jxl = kept.search_lossy(RGB, 34.0)
    assert np.array_equal(kept.lossy_decode(jxl.data, None), kept.lossy_decode(jxl.data, "jxl"))  # rows before AVIF
    data = avif.encode(RGB, 50, 10)
    png = kept.lossy_to_png(data, True, [("tEXt", b"parameters\0x")], "avif")
    with pytest.raises(IntegrityError, match="AVIF"):
        kept.lossy_decode(data[:40] + bytes(len(data) - 40), "avif")
    with pytest.raises(IntegrityError, match="unknown lossy format"):
        kept.lossy_decode(data, "webp")
    rgb, alpha = pngio.decode(png, 10**6)
    assert np.array_equal(rgb, avif.decode(data)) and (alpha == 255).all()
