"""Runtime and precision choice, each runtime's fidelity against fp32 torch, OpenVINO decodes
bit-exact within a device class, bounded tiled calls."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lbdask.cli import main
from lbdask.errors import ConfigError
from lbdask.image.quality import psnr
from lbdask.models import load_model
from lbdask.models.decode_engines import MIN_ENGINE_PSNR_DB
from lbdask.models.identity import device_class, openvino_version
from lbdask.models.memory_budget import call_peak_bytes, calls_within, check_budget
from lbdask.models.precision import choose_inference, openvino_available
from lbdask.models.runtimes import OpenVinoNet, openvino_cache_dir
from lbdask.models.tiling import tile_grid

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="OpenVINO not installed (pip install lbdask[openvino])")


@pytest.mark.parametrize(
    "precision, runtime, device, bf16, ov, expected",
    [
        ("auto", "auto", "cpu", False, False, ("torch", "fp32")),
        ("auto", "auto", "cpu", True, False, ("torch", "bf16")),
        ("auto", "auto", "cpu", True, True, ("openvino", "bf16")),
        ("auto", "auto", "cpu", False, True, ("openvino", "fp32")),
        ("fp32", "torch", "cpu", True, True, ("torch", "fp32")),
        ("auto", "auto", "cuda", False, True, ("torch", "fp16")),   # the model's cuda_dtype
        ("bf16", "auto", "cuda", False, True, ("torch", "bf16")),
    ],
)
def test_auto_picks_native_bf16_and_installed_openvino(precision, runtime, device, bf16, ov, expected):
    got = choose_inference(precision, runtime, device, "fp16", native_bf16=bf16, have_openvino=ov)
    assert (got.runtime, got.precision) == expected
    assert got.reason


def test_impossible_requests_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"lbdask\[openvino\]"):
        choose_inference("fp32", "openvino", "cpu", "fp16", native_bf16=False, have_openvino=False)
    with pytest.raises(ConfigError, match="CPU only"):
        choose_inference("auto", "openvino", "cuda", "fp16", native_bf16=False, have_openvino=True)
    with pytest.raises(ConfigError, match="fp8"):
        choose_inference("fp8", "auto", "cpu", "fp16", native_bf16=False, have_openvino=False)


def test_cli_rejects_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["read", "archive", "x.png", "--precision", "fp8"])
    assert exc.value.code == 2 and "--precision" in capsys.readouterr().err


def test_device_class_names_runtime_and_precision():
    assert device_class("cpu") == device_class("cpu", "torch", "fp32")  # archives from before keep their class
    assert device_class("cpu", "torch", "bf16").endswith("-bf16")
    if openvino_available():
        assert "-openvino" in device_class("cpu", "openvino", "fp32")


@pytest.fixture(scope="module")
def image(corpus_dir) -> np.ndarray:
    rgb = np.asarray(Image.open(corpus_dir / "flux_girl_in_field.png").convert("RGB"))
    return np.ascontiguousarray(rgb[200:328, 200:328])[None]


@pytest.fixture(scope="module")
def fp32(taef2_dir):
    return load_model("taef2", weights=taef2_dir, device="cpu", runtime="torch", precision="fp32")


@pytest.mark.parametrize("config", [
    "torch-bf16",
    pytest.param("openvino-fp32", marks=needs_openvino),
    pytest.param("openvino-bf16", marks=needs_openvino),
])
def test_each_runtime_stays_within_the_stated_psnr_of_fp32(taef2_dir, fp32, image, config):
    runtime, precision = config.split("-")
    model = load_model("taef2", weights=taef2_dir, device="cpu", runtime=runtime, precision=precision)
    assert model.inference.runtime == runtime and model.device_class != fp32.device_class
    z = fp32.encode(image)
    reference = fp32.decode(z, (128, 128))
    assert not np.array_equal(model.decode(z, (128, 128)), reference)  # another runtime or precision really ran
    assert psnr(model.decode(z, (128, 128))[0], reference[0]) >= MIN_ENGINE_PSNR_DB
    assert psnr(model.decode(model.encode(image), (128, 128))[0], reference[0]) >= MIN_ENGINE_PSNR_DB
    # verify compares decode hashes within a class: a repeated decode must be bit-exact
    np.testing.assert_array_equal(model.decode(z, (128, 128)), model.decode(z, (128, 128)))


class Clamp(nn.Module):
    """The first op of TAEF2's decoder: a division the converter marks to stay a division."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


@needs_openvino
def test_the_process_that_converts_a_model_decodes_the_bits_of_every_later_process(tmp_path):
    """The first process converts and caches the IR, later ones read it: both must run one
    graph (the converter's in-memory model kept x / 3 exact, the IR a multiply by 1/3)."""
    x = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(0)) * 4
    first = OpenVinoNet(Clamp(), 4, "fp32", "clamp", cache_dir=tmp_path)
    assert (tmp_path / f"clamp-ov{openvino_version()}.xml").is_file()
    later = OpenVinoNet(Clamp(), 4, "fp32", "clamp", cache_dir=tmp_path)
    assert torch.equal(first(x), later(x))


@needs_openvino
def test_openvino_decodes_on_other_thread_counts_are_equal_or_of_another_device_class(model, image):
    """OpenVINO's CPU kernels split work by the threads per inference (TAEF2: other bits on 1
    and on 2 threads); `lbdask verify` compares hashes within a class, so the class names them."""
    import openvino as ov

    if model.inference.runtime != "openvino":
        pytest.skip("the model runs on torch here")
    runner = model.decode_runner
    z = torch.from_numpy(model.encode(image))
    key = f"{model.name}-{model.fingerprint[:16]}-decoder-ov{openvino_version()}.xml"
    one = ov.Core().compile_model(ov.Core().read_model(openvino_cache_dir() / key), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1})
    on_one = torch.from_numpy(one.create_infer_request().infer(z.numpy())[0].copy())
    threads = int(runner.compiled.get_property("INFERENCE_NUM_THREADS"))
    assert torch.equal(on_one, runner(z)) or device_class("cpu", "openvino", "fp32", 1) != model.device_class
    assert model.device_class == device_class("cpu", "openvino", model.inference.precision, threads)
    assert model.device_class.endswith(f"-t{threads}") and model.inference.as_dict()["threads"] == threads


@pytest.mark.parametrize("align", [1, 8])
def test_tile_grid_covers_with_the_overlap_and_never_exceeds_the_tile(align):
    for tile in range(3, 41):
        for overlap in range(0, (tile - 1) // 2 + 1):
            for length in range(1, 300):
                starts, size = tile_grid(length * align, tile * align, overlap * align, align)
                assert size <= max(tile, length) * align and starts[0] == 0 and starts[-1] + size == length * align
                assert all(s % align == 0 for s in starts) and size % align == 0
                assert all(0 < b - a <= size - overlap * align for a, b in zip(starts, starts[1:]))


def test_large_images_run_in_bounded_tiles(fp32, image):
    """With tiling, no encoder or decoder call sees more than one tile; the result stays close."""
    big = np.concatenate([np.concatenate([image[0], image[0, :, ::-1]], 1)] * 2, 0)[None]  # 256 x 256
    whole = fp32.decode(fp32.encode(big), (256, 256))
    saved = fp32.spec
    fp32.spec = dataclasses.replace(saved, tile_threshold=128 * 128, tile_size=128, tile_overlap=32)
    seen: list[int] = []
    runners = fp32.encode_runner, fp32.decode_runner

    def counted(fn, scale):
        def run(x):
            seen.append(x.shape[-2] * x.shape[-1] * scale)
            return fn(x)
        return run

    fp32.encode_runner, fp32.decode_runner = counted(runners[0], 1), counted(runners[1], 64)
    try:
        tiled = fp32.decode(fp32.encode(big), (256, 256))
    finally:
        fp32.spec = saved
        fp32.encode_runner, fp32.decode_runner = runners
    assert len(seen) > 2 and max(seen) <= 128 * 128  # fails when large images run whole
    assert psnr(tiled[0], whole[0]) > 30.0
    assert psnr(tiled[0], big[0]) > psnr(whole[0], big[0]) - 2.0


def test_worker_budget_admits_one_call_or_refuses(fp32):
    spec = fp32.spec
    assert calls_within(None, spec) is None
    assert calls_within(4 * call_peak_bytes(spec), spec) >= 2
    check_budget(2 * call_peak_bytes(spec), spec, "taef2")
    with pytest.raises(ConfigError, match="cannot hold one taef2 model call"):
        check_budget(call_peak_bytes(spec) // 2, spec, "taef2")


def test_cli_and_serve_choices_are_the_models_choices():
    from lbdask.cli import inference_options
    from lbdask.models import precision
    from lbdask.serve.settings import WorkerConfig

    assert (inference_options.PRECISIONS, inference_options.RUNTIMES) == (precision.PRECISIONS, precision.RUNTIMES)
    for value in ("auto", *precision.PRECISIONS):
        WorkerConfig(precision=value).validate()
    for value in ("auto", *precision.RUNTIMES):
        WorkerConfig(runtime=value).validate()
    with pytest.raises(ValueError, match="precision"):
        WorkerConfig(precision="int8").validate()
