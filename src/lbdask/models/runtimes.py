"""Runners for the numpy encode/decode path on the CPU: torch autocast and OpenVINO.

A runner maps a float32 NCHW tensor to a float32 NCHW tensor, so tiling, padding and
uint8 conversion in `LatentModel` stay the same whatever runs underneath. The
differentiable `encode_tensor`/`decode_tensor` path (refinement) always stays torch.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from lbdask.models.identity import openvino_version
from lbdask.models.precision import cpu_has_native_bf16

if TYPE_CHECKING:
    from lbdask.models.latent_model import LatentModel

Runner = Callable[[torch.Tensor], torch.Tensor]
#: OpenVINO's names for our precisions, and back.
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
FROM_OV = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def openvino_cache_dir() -> Path:
    """Where OpenVINO caches compiled models (LBDASK_OPENVINO_CACHE overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lbdask" / "openvino"
    return Path(os.environ.get("LBDASK_OPENVINO_CACHE", default))


def converted_model(net: nn.Module, channels_in: int, ir_path: Path):
    """`net` as an OpenVINO model with dynamic batch, height and width, read from its IR at `ir_path`
    (converted and saved there first when missing).

    Conversion traces the torch module (20-90 s for TAEF2 on a loaded 2-core CPU); reading the
    cached IR takes a fraction of a second, so each worker after the first starts fast. The
    converting process compiles the IR it read back too, never the converter's in-memory
    model: that one carries runtime info the IR drops (TAEF2's `tanh(x / 3)` stays a true
    division; read from the IR the CPU plugin turns it into a multiply by 1/3), so it decoded
    other bits than every later process, under the same device class (docs/testing.md).
    """
    import openvino as ov

    if not ir_path.is_file():
        example = torch.zeros((1, channels_in, 64, 64))
        with torch.inference_mode(False), torch.no_grad():
            model = ov.convert_model(net.float().eval(), example_input=example,
                                     input=[ov.PartialShape([-1, channels_in, -1, -1])])
        ir_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ir_path.with_name(f"{ir_path.stem}.{os.getpid()}.tmp.xml")
        ov.save_model(model, tmp, compress_to_fp16=False)  # keep the fp32 weights exact
        tmp.with_suffix(".bin").replace(ir_path.with_suffix(".bin"))
        tmp.replace(ir_path)  # the .xml last: its presence means both files are complete
    return ov.Core().read_model(ir_path)


class OpenVinoNet:
    """A torch module converted by OpenVINO with dynamic batch, height and width, compiled for the CPU.

    One compiled model serves every shape (no per-shape rebuild as the migration meets new
    image sizes); the converted IR and OpenVINO's compiled blob (CACHE_DIR) are cached on
    disk for later processes, keyed by the model's fingerprint.
    """

    def __init__(self, net: nn.Module, channels_in: int, precision: str, key: str, cache_dir: Path | None = None):
        import openvino as ov

        cache = cache_dir or openvino_cache_dir()
        model = converted_model(net, channels_in, cache / f"{key}-ov{openvino_version()}.xml")
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "CACHE_DIR": str(cache),
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        actual = FROM_OV.get(str(self.compiled.get_property("INFERENCE_PRECISION_HINT")), precision)
        if actual == "bf16" and not cpu_has_native_bf16():
            actual = "fp32"  # the CPU plugin runs a bf16 hint in f32 without bf16 instructions (measured: same pixels)
        #: the precision OpenVINO really runs
        self.precision = actual
        #: threads per inference (OpenVINO's default: the cores this process may use); they decide the bits
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = self.compiled.create_infer_request()  # one per call: safe from any thread
        out = request.infer(x.detach().float().contiguous().numpy())
        return torch.from_numpy(out[0].copy())


def attach_openvino(model: LatentModel, precision: str) -> tuple[str, int]:
    """Install OpenVINO encode and decode runners on `model`; the precision that really runs
    and the decoder's threads per inference (both part of the device class)."""
    key = f"{model.name.replace('/', '_')}-{model.fingerprint[:16]}"
    encoder = OpenVinoNet(model.encoder, 3, precision, f"{key}-encoder")
    decoder = OpenVinoNet(model.decoder, model.latent_channels, precision, f"{key}-decoder")
    model.encode_runner, model.decode_runner = encoder, decoder
    model.decode_engine = "openvino"
    return decoder.precision, decoder.threads
