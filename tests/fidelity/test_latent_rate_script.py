"""benchmarks/latent_rate.py: a stopped run keeps its finished rows, and results made apart merge into one plot.

The benchmark itself is not CI (a 1024 px run takes hours on a shared CPU); what decides
which numbers reach docs/fidelity.md is.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def rate(request):
    """The script as a module (it imports its neighbour corpus_crops, so benchmarks/ goes on the path)."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("latent_rate", BENCH / "latent_rate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    request.addfinalizer(mp.undo)
    return module


def row(variant: str, image: str, nbytes: int, db: float, avif10: int | None) -> dict:
    return {"variant": variant, "image": image, "bytes": nbytes, "psnr": db, "avif8": None, "avif10": avif10, "jxl": None}


def result(rows: list[dict], sweeps, steps: int = 30, mp: float = 0.25, seconds: dict | None = None) -> dict:
    return {"megapixels_per_image": mp, "rows": rows, "sweeps": sweeps, "steps": steps, "complete": sweeps is not None,
            "refine_seconds_per_megapixel": seconds or {}, "refine_cpu_seconds_per_megapixel": {}}


def test_a_run_stopped_in_its_sweeps_has_written_its_refined_and_one_shot_rows(rate, model, corpus_dir, tmp_path,
                                                                                 monkeypatch):
    rgb = np.asarray(Image.open(corpus_dir / "flux_girl_in_field.png").convert("RGB"))[:32, :32]
    images = np.ascontiguousarray(rgb[None])

    def stopped(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(rate, "avif_roundtrip", stopped)
    with pytest.raises(KeyboardInterrupt):
        rate.measure(model, images, ["girl"], 1, tmp_path, ["qat6"])
    saved = json.loads((tmp_path / "latent_rate.json").read_text())
    assert [r["variant"] for r in saved["rows"]] == ["qat 1 steps 6", "one-shot 8", "one-shot 6"]
    assert saved["complete"] is False and saved["sweeps"] is None
    assert "qat6" in saved["refine_cpu_seconds_per_megapixel"]
    assert "| qat 1 steps 6 |" in (tmp_path / "latent_rate.md").read_text()
    assert sorted(np.load(tmp_path / "latents.npz").files) == ["images", "names", "one-shot_6", "one-shot_8",
                                                               "qat_1_steps_6"]


def sweeps(kb: int) -> dict:
    return {codec: [[(kb * 1000, 40.0), (kb * 2000, 45.0)]] for codec in ("avif8", "avif10", "jxl")}


def test_results_made_apart_merge_into_one_panel_and_other_crop_sets_are_refused(rate):
    qat = result([row("qat 30 steps 8", "a", 100, 46.0, 125), row("one-shot 8", "a", 100, 35.0, 25)],
                 sweeps=sweeps(1), seconds={"qat8": 1.0})
    flt = result([row("float 30 steps 8", "a", 100, 45.0, None)], sweeps=None, seconds={"float": 2.0})
    other_crop = result([row("qat 30 steps 8", "b", 90, 47.0, 100)], sweeps=sweeps(3)) | {"sweep_images": ["b"]}
    merged = rate.merge([qat, flt, other_crop], "TAEF2-made")
    assert [(r["variant"], r["image"]) for r in merged["rows"]] == [
        ("qat 30 steps 8", "a"), ("one-shot 8", "a"), ("float 30 steps 8", "a"), ("qat 30 steps 8", "b")]
    assert merged["sweep_images"] == ["a", "b"] and merged["sweeps"]["jxl"] == [sweeps(1)["jxl"][0], sweeps(3)["jxl"][0]]
    assert merged["title"] == "TAEF2-made" and merged["complete"] is False
    assert merged["refine_seconds_per_megapixel"] == {"qat8": 1.0, "float": 2.0}
    by_variant = {s["variant"]: s for s in rate.summary(merged)}
    assert by_variant["qat 30 steps 8"]["ratio_mean"] == pytest.approx((0.8 + 0.9) / 2)
    assert by_variant["float 30 steps 8"]["unreached"] == 1
    with pytest.raises(ValueError):
        rate.merge([qat, result([], None, steps=10)], "mixed")
    with pytest.raises(ValueError):
        rate.merge([qat, result([], None, mp=1.0)], "mixed")


def test_the_plot_has_one_panel_per_crop_set(rate, tmp_path):
    panels = [result([row(v, "a", 100, 44.0, 200)], sweeps(1)) | {"title": t}
              for v, t in (("qat 30 steps 6", "made"), ("float 30 steps 6", "real"))]
    rate.plot(panels, tmp_path / "p.png")
    one = tmp_path / "one.png"
    rate.plot(panels[:1], one)
    assert Image.open(tmp_path / "p.png").width > 1.8 * Image.open(one).width
