"""diffusers AutoencoderKL backend with a tiny random VAE saved to disk (shapes and plumbing only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from lbdask.models import load_model

SCALE, SHIFT = 0.5, 0.1


def save_tiny_vae(folder, seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=SCALE,
        shift_factor=SHIFT,
    )
    vae.save_pretrained(folder)
    return vae.eval()


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_vae")
    save_tiny_vae(folder)
    return folder


@pytest.fixture(scope="module")
def model(vae_dir):
    return load_model(vae_dir, device="cpu")


def test_geometry_from_vae_config(model):
    assert (model.latent_channels, model.downsample, model.pad_multiple) == (4, 2, 8)
    assert model.latent_shape(30, 45) == (4, 16, 24)
    assert model.config["scaling_factor"] == SCALE and model.config["shift_factor"] == SHIFT
    assert not any(p.requires_grad for p in model.decoder.parameters())


def test_scaling_and_shift_are_honoured(model, vae_dir):
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
    stored = model.encode(images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        mode = vae.encode(x * 2 - 1).latent_dist.mode()
        np.testing.assert_allclose(stored, ((mode - SHIFT) * SCALE).numpy(), atol=1e-5)
        pixels = (vae.decode(mode).sample + 1) / 2
    expected = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    got = model.decode(stored, size=(32, 40))
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_padding_and_cropping(model):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1, 30, 45, 3), dtype=np.uint8)
    z = model.encode(image)
    assert z.shape == (1, 4, 16, 24)
    padded = np.pad(image, ((0, 0), (0, 2), (0, 3), (0, 0)), mode="edge")
    np.testing.assert_allclose(z, model.encode(padded), atol=1e-5)
    out = model.decode(z, size=(30, 45))
    assert out.shape == (1, 30, 45, 3)
    np.testing.assert_array_equal(out, model.decode(z, size=(32, 48))[:, :30, :45])


def test_encode_is_deterministic(model):
    image = np.full((1, 16, 16, 3), 90, np.uint8)
    np.testing.assert_array_equal(model.encode(image), model.encode(image))


def test_fingerprint_depends_on_weights(model, vae_dir, tmp_path):
    assert load_model(vae_dir, device="cpu").fingerprint == model.fingerprint
    save_tiny_vae(tmp_path, seed=1)
    assert load_model(tmp_path, device="cpu").fingerprint != model.fingerprint


def test_registry_entry_for_a_local_vae(vae_dir, tmp_path, monkeypatch):
    from lbdask.errors import ConfigError

    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(tmp_path))
    entry = "models:\n  tiny: {{architecture: diffusers-kl, latent_channels: {c}, downsample: 2, pad_multiple: 4, " \
            "tile_size: 64, tile_overlap: 8, scaling_factor: 2.0, weights: {{local: '{w}'}}}}\n"
    (tmp_path / "models.yaml").write_text(entry.format(c=4, w=vae_dir))
    model = load_model("tiny", device="cpu")
    assert model.config["scaling_factor"] == 2.0 and model.config["shift_factor"] == SHIFT
    assert model.latent_shape(30, 30) == (4, 16, 16)
    (tmp_path / "models.yaml").write_text(entry.format(c=8, w=vae_dir))
    with pytest.raises(ConfigError, match="4 latent channels"):
        load_model("tiny", device="cpu")
