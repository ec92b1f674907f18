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
    Measurement,
    Source,
    load_sources,
    measure_conventional,
    measure_lossy_search,
    rate_distortion_report,
)
from lbdask.fidelity.wins import where_each_wins, wins_table
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


def test_lossy_fallback_best_searches_avif_and_jpegxl_and_the_chooser_takes_the_smaller(photo):
    rows = measure_lossy_search([Source("x.png", photo)], [35.0], "best")
    by = {r.method: r for r in rows}
    assert set(by) == {"jpegxl searched >= 35 dB", "avif searched >= 35 dB"}
    assert by["avif searched >= 35 dB"].family == "avif" and all(r.psnr >= 35.0 for r in rows)
    assert by["avif searched >= 35 dB"].bytes != by["jpegxl searched >= 35 dB"].bytes
    exact = [Measurement("png max", "png", "x.png", 10**6, float("inf"), 1.0),
             Measurement("jpegxl lossless", "jpegxl", "x.png", 10**6, float("inf"), 1.0),
             Measurement("latent 8-bit, 0 steps", "latent", "x.png", 10, 20.0, 0.5)]   # below the floor
    [wins] = where_each_wins(rows + exact, [35.0], ["latent 8-bit, 0 steps"])
    smaller = min(rows, key=lambda r: r.bytes)
    assert wins["winners"] == {"x.png": "avif-lossy" if smaller.family == "avif" else "jxl-lossy"}
    assert wins["lossy"] == ["avif-lossy", "jxl-lossy"] and "avif-lossy" in wins_table([wins])
    assert {r.method for r in measure_lossy_search([Source("x.png", photo)], [35.0], "avif")} == {"avif searched >= 35 dB"}


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
                 "--bits", "8", "--steps", "0,2", "--generated", "--lossy-fallback", "avif", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "fidelity.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    searched = {t["method"] for t in data["summary"] if "searched" in t["method"]}
    assert data["lossy_fallback"] == "avif" and searched and all(m.startswith("avif searched") for m in searched)
    assert next(t for t in data["summary"] if t["method"] == "png max")["psnr_mean"] is None   # lossless
    generated = list((out / "generated-src").rglob("*.png"))
    assert len(generated) == 1 and data["images"] == [generated[0].relative_to(out / "generated-src").as_posix()]
    assert Image.open(generated[0]).size == (64, 64)
    # the generated source is the model's own decode of the first crop
    crop = load_sources(corpus_dir, crop=64, limit=1)[0].rgb
    expected = model.decode(model.encode(crop[None]), size=(64, 64))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(generated[0])), expected)
