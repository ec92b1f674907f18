import hashlib
import io
import math
import shutil

import numpy as np
import pytest
import zarr
from PIL import Image, PngImagePlugin

import lbdask
from lbdask import pngio
from lbdask.archive import Archive, CatalogRow
from lbdask.codec import LatentCodec, compressed_size
from lbdask.errors import LbdaskError, ModelMismatchError, NotFoundError, StoreError
from lbdask.metrics import psnr

SOURCE_IMAGE = "flux_girl_in_field.png"


def png_bytes(pixels, mode, text=None):
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
        info.add_itxt(k + "-i", v, zip=True)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def small_rgb(corpus_dir, w, h):
    with Image.open(corpus_dir / SOURCE_IMAGE) as im:
        return np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))


def build_archive(dest, corpus_dir, taef2_dir):
    """A small archive made through the Archive API: two latents, one kept PNG, one failure.

    Returns (archive url, {id: source bytes}, model).
    """
    from lbdask.models import load_model

    model = load_model("taef2", weights=taef2_dir, device="cpu")
    arc = Archive.create(dest, model.model_info, shard_size=4)
    photo = small_rgb(corpus_dir, 96, 72)
    opaque = np.dstack([small_rgb(corpus_dir, 64, 64), np.full((64, 64), 255, np.uint8)])
    sources = {
        "dir/photo.png": (png_bytes(photo, "RGB", {"prompt": "a girl in a field"}), photo, "RGB", 8),
        "opaque.png": (png_bytes(opaque, "RGBA"), opaque[..., :3], "RGBA", 16),
    }
    rows = []
    for image_id, (data, rgb, mode, bits) in sources.items():
        z = model.encode(rgb[None])[0]
        enc = LatentCodec(bits).encode(z)
        bucket = arc.bucket_name(bits, *enc.data.shape)
        arc.ensure_bucket(bucket, bits, *enc.data.shape)
        [index] = arc.write_shard(bucket, arc.allocate_shards(bucket, 1), [enc])
        back = model.decode(LatentCodec(bits).decode(enc)[None], size=rgb.shape[:2])[0]
        rows.append(CatalogRow(
            id=image_id, status="latent", bucket=bucket, index=index, source_size=len(data),
            source_sha256=hashlib.sha256(data).hexdigest(), width=rgb.shape[1], height=rgb.shape[0], mode=mode,
            psnr=psnr(rgb, back), model_fingerprint=model.fingerprint, bits=bits, lo=enc.lo, hi=enc.hi,
            checksum=enc.checksum, stored_bytes=compressed_size(enc.data), chunks=list(pngio.probe(data).chunks)))
    transparent = np.zeros((40, 40, 4), np.uint8)
    transparent[10:30, 10:30] = (200, 30, 30, 128)
    kept = png_bytes(transparent, "RGBA", {"prompt": "a red square"})
    broken = pngio.PNG_SIGNATURE + b"\0\0\0\rIHDR but then nothing a decoder could use"
    refs = arc.put_originals("b0", {"kept.png": kept, "broken.png": broken})
    rows.append(CatalogRow(id="kept.png", status="kept", reason="alpha", source_size=len(kept),
                           source_sha256=hashlib.sha256(kept).hexdigest(), width=40, height=40, mode="RGBA",
                           stored_bytes=len(kept), original=refs["kept.png"]))
    rows.append(CatalogRow(id="broken.png", status="failed", reason="corrupt PNG", source_size=len(broken),
                           source_sha256=hashlib.sha256(broken).hexdigest(), stored_bytes=len(broken),
                           original=refs["broken.png"]))
    arc.commit("b0", rows)
    sources = {k: v[0] for k, v in sources.items()} | {"kept.png": kept, "broken.png": broken}
    return dest, sources, model


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus_dir, taef2_dir):
    return build_archive(str(tmp_path_factory.mktemp("reader") / "arc"), corpus_dir, taef2_dir)


@pytest.fixture(scope="module")
def box(archive, taef2_dir):
    """One reader for the module: the model is loaded once, on the first latent read."""
    return lbdask.open(archive[0], weights=taef2_dir)


def test_kept_image_comes_back_bit_for_bit(archive, box):
    assert box.read("kept.png") == archive[1]["kept.png"]


def test_latent_image_is_decoded_at_original_size_with_chunks(archive, box):
    _, sources, model = archive
    png = box.read("dir/photo.png")
    src_rgb, _ = pngio.decode(sources["dir/photo.png"], 10**6)
    rgb, alpha = pngio.decode(png, 10**6)
    assert rgb.shape == (72, 96, 3) and alpha is None
    assert Image.open(io.BytesIO(png)).mode == "RGB"
    assert pngio.probe(png).chunks == pngio.probe(sources["dir/photo.png"]).chunks
    assert len(pngio.probe(png).chunks) == 2
    # the pixels are the TAEF2 decode: close to the source, and the same as decoding the fp32 latent
    assert psnr(src_rgb, rgb) > 22
    direct = model.decode(model.encode(src_rgb[None]), size=(72, 96))[0]
    assert psnr(direct, rgb) > 35


def test_opaque_rgba_comes_back_as_rgba_with_full_alpha(box):
    rgb, alpha = pngio.decode(box.read("opaque.png"), 10**6)
    assert rgb.shape == (64, 64, 3) and alpha is not None and (alpha == 255).all()


def test_missing_id_raises_not_found(box):
    with pytest.raises(NotFoundError, match=r"no image 'nope.png' in archive"):
        box.read("nope.png")


def test_failed_input_comes_back_as_its_raw_bytes(archive, box):
    assert box.read("broken.png") == archive[1]["broken.png"]
    assert box.row("broken.png").status == "failed"


def test_reading_with_another_model_is_refused(archive, tmp_path, taef2_dir):
    dest = str(tmp_path / "arc")
    shutil.copytree(archive[0], dest)
    group = zarr.open_group(dest, mode="r+")
    meta = group.attrs["lbdask"]
    group.update_attributes({"lbdask": {**meta, "model": {**meta["model"], "fingerprint": "0" * 64}}})
    box = lbdask.open(dest, weights=taef2_dir)
    assert box.read("kept.png")  # kept originals need no model
    # the rows name a model the archive does not register: refused, naming both
    with pytest.raises(ModelMismatchError, match=r"rows of model [0-9a-f]{12}, .*lacks \(it has taef2 \(000000000000\)\)"):
        box.read("opaque.png")


def test_unknown_id_is_a_key_error_and_a_dead_scheduler_one_line(archive):
    from cluster_helpers import free_port

    with pytest.raises(KeyError) as err:
        lbdask.open(archive[0]).read("not/there.png")
    assert "not/there.png" in str(err.value)
    with pytest.raises(StoreError, match="cannot reach Dask scheduler"):
        lbdask.open(archive[0], scheduler=f"tcp://127.0.0.1:{free_port()}")


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert math.isinf(psnr(a, a))
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))
    with pytest.raises(LbdaskError, match="same shape"):
        psnr(a, a[:2])
