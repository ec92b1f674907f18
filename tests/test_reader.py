import io
import math
import shutil

import numpy as np
import pytest
import zarr
from PIL import Image

import lbdask
from lbdask.errors import LbdaskError, ModelMismatchError, NotFoundError, StoreError
from lbdask.image import pngio
from lbdask.image.quality import psnr
from tests.support.reader import build_archive


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
    assert box.read("kept.png")  # kept copies need no model
    # the rows name a model the archive does not register: refused, naming both
    with pytest.raises(ModelMismatchError, match=r"rows of model [0-9a-f]{12}, .*lacks \(it has taef2 \(000000000000\)\)"):
        box.read("opaque.png")


def test_unknown_id_is_a_key_error_and_a_dead_scheduler_one_line(archive, monkeypatch):
    from distributed import Client

    from lbdask.serve import client
    from tests.support.cluster import free_port

    with pytest.raises(KeyError) as err:
        lbdask.open(archive[0]).read("not/there.png")
    assert "not/there.png" in str(err.value)
    # the client's own 20 s of connection attempts shortened: the error, not the wait, is tested here
    monkeypatch.setattr(client, "Client", lambda *a, **kw: Client(*a, **{**kw, "timeout": "1s"}))
    with pytest.raises(StoreError, match="cannot reach Dask scheduler"):
        lbdask.open(archive[0], scheduler=f"tcp://127.0.0.1:{free_port()}")


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert math.isinf(psnr(a, a))
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))
    with pytest.raises(LbdaskError, match="same shape"):
        psnr(a, a[:2])
