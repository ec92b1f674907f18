"""pngio: header probe without decoding, strict decode, and byte-exact chunk restore."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from lbdask.errors import InputError
from lbdask.image import pngio
from tests.support.cluster import png_bytes

CORPUS_WITH_TEXT = "flux_girl_in_field.png"
CORPUS_RGBA = "inpaint_yosemite_inpaint_example.png"


def _raw_chunks(data: bytes) -> list[tuple[str, bytes]]:
    """Independent chunk walker (does not use pngio) to compare raw bytes."""
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8].decode("latin-1"), data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def test_probe_reads_header_and_text_chunks_of_a_corpus_file(corpus_dir):
    data = (corpus_dir / CORPUS_WITH_TEXT).read_bytes()
    info = pngio.probe(data)
    with Image.open(io.BytesIO(data)) as im:
        assert (info.width, info.height) == im.size
        assert info.mode == im.mode
    expected = [(t, b) for t, b in _raw_chunks(data) if t in ("tEXt", "iTXt", "zTXt", "iCCP")]
    assert expected, "corpus file should carry text chunks"
    assert [tuple(c) for c in info.chunks] == expected
    assert info.bit_depth == 8 and not info.has_alpha


def test_probe_reports_alpha_and_decode_splits_it(corpus_dir):
    data = (corpus_dir / CORPUS_RGBA).read_bytes()
    info = pngio.probe(data)
    assert info.mode == "RGBA" and info.has_alpha
    rgb, alpha = pngio.decode(data, max_pixels=10**8)
    with Image.open(io.BytesIO(data)) as im:
        ref = np.asarray(im.convert("RGBA"))
    assert rgb.shape == (info.height, info.width, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, ref[:, :, :3]) and np.array_equal(alpha, ref[:, :, 3])


def test_encode_round_trip_keeps_chunks_byte_identical_and_pixels_exact(corpus_dir):
    data = (corpus_dir / CORPUS_WITH_TEXT).read_bytes()
    info = pngio.probe(data)
    rgb, alpha = pngio.decode(data, max_pixels=10**8)
    crop = np.ascontiguousarray(rgb[:96, :128])
    out = pngio.encode(crop, alpha, info.chunks)
    again = pngio.probe(out)
    assert again.chunks == info.chunks
    kept_raw = [(t, b) for t, b in _raw_chunks(out) if t in ("tEXt", "iTXt", "zTXt", "iCCP")]
    assert kept_raw == [tuple(c) for c in info.chunks]
    with Image.open(io.BytesIO(out)) as im:  # Pillow sees the restored text metadata
        assert set(im.text) == {k for k in Image.open(io.BytesIO(data)).text}
    back, back_alpha = pngio.decode(out, max_pixels=10**8)
    assert back_alpha is None and np.array_equal(back, crop)


def test_icc_profile_goes_before_image_data_and_survives():
    icc = b"fake-icc-profile" * 40
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "héllo", lang="en")
    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    alpha = np.full((32, 48), 17, np.uint8)
    src = png_bytes(rgb, icc_profile=icc, pnginfo=info)
    chunks = pngio.probe(src).chunks
    assert {c.type for c in chunks} == {"iCCP", "iTXt"}
    out = pngio.encode(rgb, alpha, chunks)
    order = [t for t, _ in _raw_chunks(out)]
    assert order.index("iCCP") < order.index("IDAT")
    with Image.open(io.BytesIO(out)) as im:
        assert im.info["icc_profile"] == icc and im.mode == "RGBA"
    r, a = pngio.decode(out, 10**6)
    assert np.array_equal(r, rgb) and np.array_equal(a, alpha)


@pytest.mark.parametrize(
    "pixels,mode,has_alpha",
    [
        (np.zeros((8, 8), np.uint8), "L", False),
        (np.zeros((8, 8, 2), np.uint8), "LA", True),
        (np.zeros((8, 8, 4), np.uint8), "RGBA", True),
    ],
)
def test_probe_modes(pixels, mode, has_alpha):
    info = pngio.probe(png_bytes(pixels))
    assert (info.mode, info.has_alpha, info.width, info.height) == (mode, has_alpha, 8, 8)


def test_palette_with_trns_and_16_bit_grey():
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    info = pngio.probe(buf.getvalue())
    assert info.mode == "P" and info.has_alpha
    grey16 = np.full((4, 4), 0x1234, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, format="PNG")
    info = pngio.probe(buf.getvalue())
    assert (info.mode, info.bit_depth) == ("L", 16)
    rgb, alpha = pngio.decode(buf.getvalue(), 100)
    assert alpha is None and (rgb == 0x12).all()


def test_truncated_file_is_an_input_error():
    data = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="truncated"):
        pngio.decode(data[: len(data) // 2], 10**6)


def test_not_a_png_and_bad_crc_are_input_errors():
    with pytest.raises(InputError, match="not a PNG"):
        pngio.probe(b"GIF89a" + b"\0" * 40)
    data = bytearray(png_bytes(np.zeros((16, 16, 3), np.uint8)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte of compressed data: CRC no longer matches
    with pytest.raises(InputError, match="CRC"):
        pngio.decode(bytes(data), 10**6)


def test_bad_deflate_stream_with_valid_crc_is_an_input_error():
    data = png_bytes(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    chunks = _raw_chunks(data)
    garbage = b"\x78\x9c" + b"\xff" * 50
    rebuilt = pngio.PNG_SIGNATURE + b"".join(
        pngio.chunk_bytes(pngio.PngChunk(t, garbage if t == "IDAT" else b)) for t, b in chunks
    )
    with pytest.raises(InputError, match="corrupt"):
        pngio.decode(rebuilt, 10**6)


def test_decompression_bomb_is_refused_before_decoding():
    # 8000 x 8000 black image: a few hundred KB of deflate for 192 MB of pixels.
    width = height = 8000
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\0" * (1 + 3 * width)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    bomb = pngio.PNG_SIGNATURE + b"".join(
        pngio.chunk_bytes(pngio.PngChunk(t, b)) for t, b in (("IHDR", ihdr), ("IDAT", body), ("IEND", b""))
    )
    assert len(bomb) < 2_000_000
    assert pngio.probe(bomb).pixels == width * height
    with pytest.raises(InputError, match="decompression bomb"):
        pngio.decode(bomb, max_pixels=20_000_000)
