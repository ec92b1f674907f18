"""SSIM, the conventional-codec round trips and the rate-distortion report (TAEF2, tiny crops)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lbdask.cli import main
from lbdask.errors import InputError
from lbdask.fidelity.rate_distortion import (
    CONVENTIONAL,
    Source,
    load_sources,
    measure_conventional,
    rate_distortion_report,
)
from lbdask.image.quality import ssim
from lbdask.models import load_model


@pytest.fixture(scope="module")
def photo(corpus_dir) -> np.ndarray:
    return load_sources(corpus_dir, crop=64, limit=1)[0].rgb


def test_ssim_is_one_for_identical_images_and_falls_with_noise(photo):
    rng = np.random.default_rng(0)
    assert ssim(photo, photo) == pytest.approx(1.0)
    scores = []
    for sigma in (2, 8, 32):
        noisy = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(photo, noisy))
        assert ssim(noisy, photo) == pytest.approx(scores[-1])
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_ignores_what_psnr_punishes_on_flat_regions():
    """A uniform brightness shift keeps structure: SSIM stays high, far above random noise."""
    flat = np.full((32, 32, 3), 120, np.uint8)
    shifted = flat + 4
    noise = np.random.default_rng(1).integers(0, 256, flat.shape, dtype=np.uint8)
    assert ssim(flat, shifted) > 0.99 > ssim(flat, noise)


def test_ssim_rejects_mismatched_shapes(photo):
    with pytest.raises(InputError):
        ssim(photo, photo[:32])


def test_conventional_codecs_lossless_ones_are_exact(photo):
    rows = {r.method: r for r in measure_conventional([Source("x.png", photo)])}
    assert set(rows) == set(CONVENTIONAL)
    for lossless in ("png max", "jpegxl lossless"):
        assert rows[lossless].psnr == float("inf") and rows[lossless].ssim == pytest.approx(1.0)
    assert rows["webp q95"].bytes > rows["webp q90"].bytes
    assert rows["webp q95"].psnr > rows["webp q90"].psnr > 25


def test_report_and_cli_write_table_json_and_plot(corpus_dir, taef2_dir, tmp_path):
    model = load_model("taef2", weights=taef2_dir, device="cpu")
    sources = load_sources(corpus_dir, crop=64, limit=1)
    report = rate_distortion_report(model, sources, tmp_path / "a", "test", bits_list=(8, 6), steps_list=(0, 6))
    summary = {t["method"]: t for t in report["summary"]}
    assert summary["latent 8-bit, 6 steps"]["psnr_mean"] > summary["latent 8-bit, 0 steps"]["psnr_mean"] + 1
    assert summary["latent 6-bit, 0 steps"]["bytes_mean"] < summary["latent 8-bit, 0 steps"]["bytes_mean"]
    for name in ("fidelity.json", "fidelity.md", "fidelity.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert "| latent 6-bit, 6 steps |" in (tmp_path / "a" / "fidelity.md").read_text()
    assert {w["min_psnr"] for w in report["where_each_wins"]} == {30.0, 38.0, 42.0}   # the chooser's outcome
    assert "What the migration's chooser stores" in (tmp_path / "a" / "fidelity.md").read_text()

    out = tmp_path / "gen"
    code = main(["fidelity", str(corpus_dir), "--weights", str(taef2_dir), "--crop", "64", "--limit", "1",
                 "--bits", "8", "--steps", "0,2", "--generated", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "fidelity.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert next(t for t in data["summary"] if t["method"] == "png max")["psnr_mean"] is None   # lossless
    generated = list((out / "generated-src").rglob("*.png"))
    assert len(generated) == 1 and data["images"] == [generated[0].relative_to(out / "generated-src").as_posix()]
    assert Image.open(generated[0]).size == (64, 64)
    # the generated source is the model's own decode of the first crop
    crop = load_sources(corpus_dir, crop=64, limit=1)[0].rgb
    expected = model.decode(model.encode(crop[None]), size=(64, 64))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(generated[0])), expected)
