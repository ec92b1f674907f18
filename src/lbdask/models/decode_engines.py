"""Decode engines for the serving/verify hot path: torch eager, torch.compile, TensorRT.

An engine is how torch executes the decoder network on the numpy path; the network itself
is the model's architecture and torch vs OpenVINO its runtime (docs/glossary.md).
The registry (or the caller) asks for `auto|eager|compile|tensorrt`; what cannot run here
falls back along tensorrt -> compile -> eager, and one log line says what runs and why;
`auto` never picks compile (its autotuning costs minutes per new shape, docs/benchmarks.md).
The differentiable `decode_tensor` path always stays eager.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lbdask.errors import ConfigError
from lbdask.image.quality import psnr

if TYPE_CHECKING:
    from lbdask.models.latent_model import LatentModel

log = logging.getLogger("lbdask.models")

ENGINES = ("eager", "compile", "tensorrt")
#: Documented bound: a fast engine's decode must stay this close (PSNR, dB) to fp32 eager.
MIN_ENGINE_PSNR_DB = 45.0
Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EngineChoice:
    """The engine that will run and the reason, as logged."""

    name: str
    reason: str


def tensorrt_available() -> bool:
    """Whether the optional TensorRT extra (`pip install lbdask[tensorrt]`) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "onnx"))


def compile_available() -> bool:
    """Whether torch.compile (dynamo) supports this Python/torch build."""
    try:
        import torch._dynamo

        return bool(torch._dynamo.is_dynamo_supported())
    except Exception:  # an unsupported build can fail on import in several ways
        return False


def choose_decode_engine(requested: str, cuda: bool, have_tensorrt: bool, have_compile: bool) -> EngineChoice:
    """Pick an engine for `requested`, falling back tensorrt -> compile -> eager."""
    if requested not in ("auto", *ENGINES):
        raise ConfigError(f"decode_engine {requested!r} is not one of auto, {', '.join(ENGINES)}")
    if requested == "eager":
        return EngineChoice("eager", "requested")
    if requested == "auto" and not cuda:
        return EngineChoice("eager", "auto: no CUDA device")
    if requested == "tensorrt" and not cuda:
        return EngineChoice("eager", "tensorrt requested but no CUDA device")
    if requested == "compile":
        if have_compile:
            return EngineChoice("compile", "requested" if cuda else "requested (CPU: inductor, no CUDA graphs)")
        return EngineChoice("eager", "compile requested but torch.compile is unsupported here")
    # requested is tensorrt or auto, on CUDA
    if have_tensorrt:
        return EngineChoice("tensorrt", "requested" if requested == "tensorrt" else "auto: TensorRT available")
    why = "tensorrt not importable (pip install lbdask[tensorrt])"
    if requested == "auto":
        # compile autotunes each new latent shape for minutes (H200, docs/benchmarks.md): an
        # explicit choice for long single-shape runs, not a default for mixed archives
        return EngineChoice("eager", f"auto: {why}; compile is opt-in")
    if have_compile:
        return EngineChoice("compile", f"{requested}: {why}")
    return EngineChoice("eager", f"{requested}: {why}; torch.compile unsupported")


def eager_runner(model: LatentModel) -> Runner:
    """The model's own frozen decoder in its dtype and memory format (under CPU autocast for bf16/fp16)."""
    return model.eager_decode_runner


def compile_runner(model: LatentModel) -> Runner:
    """torch.compile of the decoder; on CUDA max-autotune with CUDA-graph replay per fixed shape."""
    if model.device.type != "cuda":
        return torch.compile(model.decoder, dynamic=False)
    compiled = torch.compile(model.decoder, mode="max-autotune", dynamic=False)

    def run(z: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(z).clone()  # graph outputs are overwritten by the next replay

    return run


def engine_cache_dir() -> Path:
    """Where TensorRT engines are cached (LBDASK_ENGINE_CACHE overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lbdask" / "tensorrt"
    return Path(os.environ.get("LBDASK_ENGINE_CACHE", default))


def engine_cache_key(fingerprint: str, latent_shape: tuple[int, ...], precision: str, trt_version: str, max_batch: int) -> str:
    """Key of one cached engine: any change of weights, shape, precision, TensorRT or batch profile misses."""
    text = f"{fingerprint}|{'x'.join(map(str, latent_shape))}|{precision}|trt{trt_version}|b{max_batch}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class TensorRTDecoder:
    """Decoder as TensorRT engines, one per latent shape, dynamic batch 1..batch_size, cached on disk."""

    def __init__(self, model: LatentModel, cache_dir: Path | None = None):
        import tensorrt as trt

        self.trt = trt
        self.model = model
        self.cache_dir = cache_dir or engine_cache_dir()
        self.max_batch = model.spec.batch_size
        self.precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(model.dtype, "fp32")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.contexts: dict[tuple[int, ...], object] = {}

    def engine_path(self, shape: tuple[int, ...]) -> Path:
        key = engine_cache_key(self.model.fingerprint, shape, self.precision, self.trt.__version__, self.max_batch)
        return self.cache_dir / f"{self.model.name.replace('/', '_')}-{key}.engine"

    def build(self, shape: tuple[int, ...], path: Path) -> None:
        """Export the fp32 decoder to ONNX and build an engine with a dynamic batch profile."""
        trt = self.trt
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx_path = path.with_suffix(".onnx")
        net = copy.deepcopy(self.model.decoder).float()
        example = torch.zeros((1, *shape), device=self.model.device)
        torch.onnx.export(
            net, (example,), str(onnx_path), input_names=["z"], output_names=["x"],
            dynamic_axes={"z": {0: "n"}, "x": {0: "n"}}, opset_version=17, dynamo=False,
        )
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        if self.precision != "fp32":
            config.set_flag(trt.BuilderFlag.FP16 if self.precision == "fp16" else trt.BuilderFlag.BF16)
        profile = builder.create_optimization_profile()
        profile.set_shape("z", (1, *shape), (self.max_batch, *shape), (self.max_batch, *shape))
        config.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError(f"TensorRT failed to build an engine for latent shape {shape}")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(engine))
        tmp.replace(path)
        onnx_path.unlink(missing_ok=True)

    def context(self, shape: tuple[int, ...]):
        """Execution context for one latent shape, building and caching the engine on a miss."""
        if shape not in self.contexts:
            path = self.engine_path(shape)
            if not path.is_file():
                log.info("building TensorRT engine %s for latent shape %s", path.name, shape)
                self.build(shape, path)
            engine = self.trt.Runtime(self.logger).deserialize_cuda_engine(path.read_bytes())
            self.contexts[shape] = engine.create_execution_context()
        return self.contexts[shape]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        shape = tuple(z.shape[1:])
        context = self.context(shape)
        z = z.float().contiguous()
        ds = self.model.downsample
        out = torch.empty((z.shape[0], 3, shape[1] * ds, shape[2] * ds), device=z.device, dtype=torch.float32)
        context.set_input_shape("z", tuple(z.shape))
        context.set_tensor_address("z", z.data_ptr())
        context.set_tensor_address("x", out.data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream(z.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out.to(self.model.dtype)


BUILDERS: dict[str, Callable[[LatentModel], Runner]] = {
    "eager": eager_runner,
    "compile": compile_runner,
    "tensorrt": TensorRTDecoder,
}


class FallbackRunner:
    """Runs the fast engine; if it fails (build or first run), logs once and switches to eager."""

    def __init__(self, model: LatentModel, name: str, runner: Runner):
        self.model, self.name, self.runner = model, name, runner

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.name != "eager":
            try:
                return self.runner(z)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:
                log.warning("decode engine %s failed (%s: %s); falling back to eager", self.name, type(exc).__name__, exc)
                self.name, self.runner = "eager", eager_runner(self.model)
                self.model.decode_engine = "eager"
        return self.runner(z)


def attach_decode_engine(model: LatentModel, requested: str) -> EngineChoice:
    """Choose, build and install the numpy-path decode runner of `model`; log the choice once."""
    choice = choose_decode_engine(
        requested,
        cuda=model.device.type == "cuda",
        have_tensorrt=tensorrt_available(),
        have_compile=compile_available(),
    )
    runner = BUILDERS[choice.name](model)
    model.decode_runner = runner if choice.name == "eager" else FallbackRunner(model, choice.name, runner)
    model.decode_engine = choice.name
    log.info("decode engine for %s on %s/%s: %s (%s)", model.name, model.device, str(model.dtype).removeprefix("torch."), choice.name, choice.reason)
    return choice


def engine_psnr(model: LatentModel, z: torch.Tensor) -> float:
    """PSNR of the installed decode engine against an fp32 eager copy of the decoder on `z`."""
    reference = copy.deepcopy(model.decoder).float()
    with torch.inference_mode():
        z = z.to(model.device)
        expected = reference(z.float())
        got = model.decode_runner(z.to(model.dtype).contiguous(memory_format=model.memory_format))
    return psnr(*(t.float().clamp(0, 1).cpu().numpy() for t in (got, expected)), peak=1.0)
