"""LatentModel with the real TAEF2 weights: shapes, fidelity floor, padding, tiling, gradients."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lbdask.image.quality import psnr
from lbdask.models import LatentModel, load_model
from lbdask.models.tiling import apply_tiled

PHOTOS = ["flux_girl_in_field.png", "sd3_sd3_simple_example.png", "sdturbo_sdxlturbo_example.png"]


def crop(corpus_dir, name: str, h: int, w: int, y: int = 300, x: int = 300) -> np.ndarray:
    rgb = np.asarray(Image.open(corpus_dir / name).convert("RGB"))
    return np.ascontiguousarray(rgb[y:y + h, x:x + w])


@pytest.fixture(scope="module")
def taef2(taef2_dir) -> LatentModel:
    return load_model("taef2", weights=taef2_dir, device="cpu")


def test_metadata_and_frozen(taef2):
    assert (taef2.latent_channels, taef2.downsample, taef2.pad_multiple) == (32, 8, 8)
    assert taef2.dtype == torch.float32 and taef2.device.type == "cpu"
    assert taef2.latent_shape(100, 129) == (32, 13, 17)
    assert len(taef2.fingerprint) == 64 and int(taef2.fingerprint, 16) >= 0
    assert taef2.device_class.startswith("cpu-")
    params = list(taef2.encoder.parameters()) + list(taef2.decoder.parameters())
    assert params and not any(p.requires_grad for p in params)


@pytest.mark.parametrize("name", PHOTOS)
def test_round_trip_psnr_floor_on_real_images(taef2, corpus_dir, name):
    image = crop(corpus_dir, name, 128, 136)
    z = taef2.encode(image[None])
    assert z.shape == (1, 32, 16, 17) and z.dtype == np.float32
    back = taef2.decode(z, size=(128, 136))
    assert back.shape == (1, 128, 136, 3) and back.dtype == np.uint8
    assert psnr(back[0], image) > 28.0


def test_padding_is_edge_replication_and_decode_crops(taef2, corpus_dir):
    image = crop(corpus_dir, PHOTOS[0], 61, 90)
    z = taef2.encode(image[None])
    assert z.shape == (1, 32, 8, 12)
    padded = np.pad(image, ((0, 3), (0, 6), (0, 0)), mode="edge")
    np.testing.assert_allclose(z, taef2.encode(padded[None]), atol=1e-5)
    full = taef2.decode(z, size=(64, 96))
    np.testing.assert_array_equal(taef2.decode(z, size=(61, 90)), full[:, :61, :90])
    with pytest.raises(ValueError, match="do not fit"):
        taef2.decode(z, size=(80, 90))


def test_micro_batch_follows_the_device(taef2):
    assert taef2.micro_batch == taef2.spec.cpu_batch_size == 1  # CPU: one image per pass
    assert taef2.spec.batch_size > 1                             # CUDA: the configured batch


def test_batched_matches_one_by_one(taef2_dir, corpus_dir):
    model = load_model("taef2", weights=taef2_dir, device="cpu")
    model.spec = dataclasses.replace(model.spec, cpu_batch_size=3)  # one forward pass of 3 images
    images = np.stack([crop(corpus_dir, n, 64, 64) for n in PHOTOS])
    batched = model.encode(images)
    single = np.concatenate([model.encode(im[None]) for im in images])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    decoded = model.decode(batched, size=(64, 64))
    np.testing.assert_array_equal(decoded[1:2], model.decode(batched[1:2], size=(64, 64)))


def test_tiled_agrees_with_untiled_on_real_image(taef2, corpus_dir):
    image = crop(corpus_dir, PHOTOS[0], 256, 256, y=200)
    whole = taef2.decode(taef2.encode(image[None]), size=(256, 256))
    saved = taef2.spec
    taef2.spec = dataclasses.replace(saved, tile_threshold=128 * 128, tile_size=128, tile_overlap=32)
    try:
        assert taef2.needs_tiles(256, 256)
        tiled = taef2.decode(taef2.encode(image[None]), size=(256, 256))
    finally:
        taef2.spec = saved
    # GroupNorm statistics are per tile, so tiles cannot match exactly; they must agree closely
    assert psnr(tiled[0], whole[0]) > 33.0
    assert psnr(tiled[0], image) > psnr(whole[0], image) - 2.0


def test_apply_tiled_is_exact_for_local_ops():
    x = torch.rand(2, 3, 40, 56)
    pool = lambda t: torch.nn.functional.avg_pool2d(t, 8)  # noqa: E731
    np.testing.assert_allclose(apply_tiled(pool, x, tile=24, overlap=8, down=8), pool(x), atol=1e-6)
    z = torch.rand(2, 4, 5, 7)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=8)  # noqa: E731
    np.testing.assert_allclose(apply_tiled(up, z, tile=3, overlap=1, up=8), up(z), atol=1e-6)


def test_decode_tensor_gradients_reach_latents_only(taef2):
    z = torch.randn(1, 32, 6, 6, requires_grad=True)
    x = taef2.decode_tensor(z)
    assert x.shape == (1, 3, 48, 48) and x.dtype == torch.float32
    x.mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in taef2.decoder.parameters())


def test_encode_tensor_is_differentiable(taef2):
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    taef2.encode_tensor(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_rejects_wrong_image_dtype(taef2):
    with pytest.raises(ValueError, match="uint8"):
        taef2.encode(np.zeros((1, 16, 16, 3), np.float32))
