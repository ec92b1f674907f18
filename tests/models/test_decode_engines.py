"""Decode engine selection, fallback, logging, engine-cache keys; GPU-only numerical checks."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lbdask.errors import ConfigError
from lbdask.models import load_model
from lbdask.models.decode_engines import (
    MIN_ENGINE_PSNR_DB,
    FallbackRunner,
    attach_decode_engine,
    choose_decode_engine,
    engine_cache_key,
    engine_psnr,
    tensorrt_available,
)


@pytest.fixture(scope="module")
def taef2(taef2_dir):
    return load_model("taef2", weights=taef2_dir, device="cpu")


@pytest.mark.parametrize(
    "requested, cuda, trt, comp, expected",
    [
        ("auto", False, True, True, "eager"),
        ("auto", True, True, True, "tensorrt"),
        ("auto", True, False, True, "eager"),
        ("auto", True, False, False, "eager"),
        ("tensorrt", False, True, True, "eager"),
        ("tensorrt", True, False, True, "compile"),
        ("tensorrt", True, True, True, "tensorrt"),
        ("compile", False, True, True, "compile"),
        ("compile", True, True, False, "eager"),
        ("eager", True, True, True, "eager"),
    ],
)
def test_selection_and_fallback_chain(requested, cuda, trt, comp, expected):
    assert choose_decode_engine(requested, cuda, trt, comp).name == expected


def test_fallback_reasons_say_why():
    assert "no CUDA" in choose_decode_engine("auto", False, False, True).reason
    assert "lbdask[tensorrt]" in choose_decode_engine("tensorrt", True, False, True).reason
    with pytest.raises(ConfigError, match="turbo"):
        choose_decode_engine("turbo", False, False, False)


def test_one_log_line_names_engine_and_reason(taef2, caplog):
    with caplog.at_level(logging.INFO, logger="lbdask.models"):
        choice = attach_decode_engine(taef2, "tensorrt")
    lines = [r.getMessage() for r in caplog.records if r.name == "lbdask.models"]
    assert len(lines) == 1
    assert choice.name == "eager" == taef2.decode_engine
    assert "taef2" in lines[0] and "eager" in lines[0] and "no CUDA device" in lines[0]


def test_tensorrt_not_importable_here_is_reported():
    # this CPU test machine has no TensorRT; on a machine with it the chain picks it
    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    choice = choose_decode_engine("auto", True, tensorrt_available(), True)
    assert choice.name == "eager" and "tensorrt not importable" in choice.reason


def test_engine_cache_key_changes_with_every_component():
    base = dict(fingerprint="a" * 64, latent_shape=(32, 64, 64), precision="fp16", trt_version="10.3", max_batch=8)
    key = engine_cache_key(**base)
    assert engine_cache_key(**base) == key
    for field, other in [
        ("fingerprint", "b" * 64), ("latent_shape", (32, 64, 128)), ("precision", "bf16"),
        ("trt_version", "10.4"), ("max_batch", 16),
    ]:
        assert engine_cache_key(**{**base, field: other}) != key, field


def test_failing_fast_engine_falls_back_to_eager(taef2, caplog):
    def broken(z):
        raise RuntimeError("engine exploded")

    attach_decode_engine(taef2, "eager")
    z = np.random.default_rng(0).normal(size=(1, 32, 4, 4)).astype(np.float32)
    expected = taef2.decode(z, size=(32, 32))
    taef2.decode_runner, taef2.decode_engine = FallbackRunner(taef2, "tensorrt", broken), "tensorrt"
    with caplog.at_level(logging.WARNING, logger="lbdask.models"):
        got = taef2.decode(z, size=(32, 32))
    np.testing.assert_array_equal(got, expected)
    assert taef2.decode_engine == "eager"
    assert any("engine exploded" in r.getMessage() and "eager" in r.getMessage() for r in caplog.records)
    attach_decode_engine(taef2, "eager")


def test_eager_engine_psnr_bound_holds(taef2):
    attach_decode_engine(taef2, "eager")
    assert engine_psnr(taef2, torch.randn(1, 32, 4, 4)) >= MIN_ENGINE_PSNR_DB


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["eager", "compile", "tensorrt"])
def test_cuda_engines_within_bound_of_fp32_eager(taef2_dir, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_ENGINE_CACHE", str(tmp_path))
    model = load_model("taef2", weights=taef2_dir, device="cuda", decode_engine=engine)
    if engine == "tensorrt" and model.decode_engine != "tensorrt":
        pytest.skip("TensorRT not installed")
    z = torch.randn(2, 32, 32, 32)
    assert engine_psnr(model, z) >= MIN_ENGINE_PSNR_DB
    if engine == "tensorrt":
        assert list(tmp_path.glob("*.engine"))


@pytest.mark.gpu
def test_cuda_encode_fast_path_round_trip(taef2_dir):
    model = load_model("taef2", weights=taef2_dir, device="cuda")
    assert model.dtype in (torch.float16, torch.bfloat16)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 80, 3), dtype=np.uint8)
    cpu = load_model("taef2", weights=taef2_dir, device="cpu")
    fast, reference = model.encode(images), cpu.encode(images)
    assert np.sqrt(np.mean((fast - reference) ** 2) / np.mean(reference**2)) < 0.02


def test_gpu_bench_smoke_mode_runs_on_cpu(taef2_dir, tmp_path):
    import subprocess
    import sys

    from lbdask.config import DEFAULT_CONFIG_DIR

    bench = DEFAULT_CONFIG_DIR.parent / "benchmarks" / "gpu_bench.py"
    out = tmp_path / "table.md"
    cmd = [sys.executable, str(bench), "--smoke", "--device", "cpu", "--taef2-weights", str(taef2_dir), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in out.read_text().splitlines() if "| eager |" in line]
    assert len(rows) == 4  # two models x batches 1 and 2
    assert all("taef2" in r or "sd35-arch" in r for r in rows)
    assert "torch" in out.read_text().splitlines()[0]
