"""`LatentModel`: one encode/decode interface over every VAE architecture.

Callers hand over uint8 RGB batches and get float32 latents back (and the reverse); padding
to the model's multiple, tiling of large images, batching, device placement and precision
are handled here once, so the archive, migration and serving code never see an architecture.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lbdask.models.cpu_memory import release_freed_memory
from lbdask.models.identity import device_class
from lbdask.models.precision import Inference
from lbdask.models.registry import ModelSpec
from lbdask.models.tiling import apply_tiled

#: torch dtype of each precision name.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_autocast(net: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """`net` under CPU autocast to `dtype` (convolutions in bf16/fp16, norms in fp32), channels_last.

    oneDNN's bf16 convolutions want NHWC; the weights stay fp32 so the differentiable
    path and the fingerprint are unchanged.
    """
    net.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype):
            return net(x.float().contiguous(memory_format=torch.channels_last)).float()

    return run


class ScaledEncoder(nn.Module):
    """Pixels in [0, 1] -> stored latents `(z - shift) * scale`."""

    def __init__(self, net: nn.Module, scale: float, shift: float):
        super().__init__()
        self.net, self.scale, self.shift = net, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) - self.shift) * self.scale


class ScaledDecoder(nn.Module):
    """Stored latents -> pixels roughly in [0, 1], inverting the scaling and shift first."""

    def __init__(self, net: nn.Module, scale: float, shift: float):
        super().__init__()
        self.net, self.scale, self.shift = net, scale, shift

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z / self.scale + self.shift)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges of NCHW `x` up to a multiple of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class LatentModel:
    """A frozen VAE behind `encode`/`decode` (numpy, batched) and `encode_tensor`/`decode_tensor`."""

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        encoder: nn.Module,
        decoder: nn.Module,
        fingerprint: str,
        config: dict[str, Any],
        device: torch.device,
        dtype: torch.dtype,
        inference: Inference | None = None,
    ):
        self.name = name
        self.spec = spec
        self.latent_channels: int = spec.latent_channels  # type: ignore[assignment]
        self.downsample = spec.downsample
        self.pad_multiple = spec.pad_multiple
        self.fingerprint = fingerprint
        self.config = config
        self.device = device
        self.dtype = dtype
        names = {v: k for k, v in PRECISION_DTYPES.items()}
        self.inference = inference or Inference("torch", names[dtype], "requested")
        autocast = device.type == "cpu" and self.inference.runtime == "torch" and self.inference.precision != "fp32"
        memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.encoder = encoder.to(device=device, dtype=dtype, memory_format=memory_format).eval().requires_grad_(False)
        self.decoder = decoder.to(device=device, dtype=dtype, memory_format=memory_format).eval().requires_grad_(False)
        self.memory_format = memory_format
        self.encode_runner: Callable[[torch.Tensor], torch.Tensor] = self.encoder
        self.decode_runner: Callable[[torch.Tensor], torch.Tensor] = self.decoder
        self.decode_engine = "eager"
        if autocast:  # CPU bf16/fp16: fp32 weights, low-precision convolutions (cpu_autocast)
            low = PRECISION_DTYPES[self.inference.precision]
            self.encode_runner, self.decode_runner = cpu_autocast(self.encoder, low), cpu_autocast(self.decoder, low)
            self.decode_engine = f"autocast-{self.inference.precision}"
        #: the torch decode for this precision: what the `eager` decode engine runs
        self.eager_decode_runner = self.decode_runner

    # ----------------------------------------------------------------- metadata
    @property
    def device_class(self) -> str:
        """Hardware, runtime and precision class recorded with each decode hash and PSNR,
        e.g. `cpu-x86_64-torch2.13` (fp32) or `cpu-x86_64-openvino2026.4-bf16-avx512-t8`."""
        return device_class(self.device, self.inference.runtime, self.inference.precision, self.inference.threads)

    @property
    def model_info(self) -> dict[str, Any]:
        """What an archive records about the model that wrote it."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "latent_channels": self.latent_channels,
            "downsample": self.downsample,
            "pad_multiple": self.pad_multiple,
            "config": self.config,
        }

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Image size after padding to the model's multiple."""
        m = self.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        """(C, H/ds, W/ds) of the latent of an h x w image (after padding)."""
        ph, pw = self.padded_size(h, w)
        return self.latent_channels, ph // self.downsample, pw // self.downsample

    def needs_tiles(self, h: int, w: int) -> bool:
        """Whether an image of h x w padded pixels is processed in tiles."""
        return h * w > self.spec.tile_threshold

    # ------------------------------------------------------- differentiable path
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Float [0,1] NCHW, padded, on the device -> float32 latents (differentiable)."""
        x = x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        return self._run_encoder(self.encoder, x).float()

    def decode_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> float32 NCHW pixels roughly in [0, 1] (differentiable in `z`)."""
        z = z.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        return self._run_decoder(self.decoder, z).float()

    def _run_encoder(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if not self.needs_tiles(*x.shape[-2:]):
            return fn(x)
        s = self.spec
        return apply_tiled(fn, x, s.tile_size, s.tile_overlap, up=1, down=self.downsample)

    def _run_decoder(self, fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        ds = self.downsample
        if not self.needs_tiles(z.shape[-2] * ds, z.shape[-1] * ds):
            return fn(z)
        s = self.spec
        return apply_tiled(fn, z, s.tile_size // ds, s.tile_overlap // ds, up=ds, down=1)

    # ------------------------------------------------------------- numpy path
    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """Host array -> device tensor; pinned memory and an async copy on CUDA."""
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # e.g. pixels decoded from a read-only buffer; torch needs writable
            array = array.copy()
        t = torch.from_numpy(array)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    @property
    def micro_batch(self) -> int:
        """Images per forward pass: large on CUDA, small on CPU where big activations thrash the caches."""
        return self.spec.batch_size if self.device.type == "cuda" else self.spec.cpu_batch_size

    def _after_pass(self) -> None:
        """On the CPU, give the pass's freed activations back when the heap keeps too many
        (configs/cpu_memory.yaml `release_above_mb`): other threads' allocations between
        passes fragment the kept heap, and the peak would grow pass after pass."""
        if self.device.type == "cpu":
            release_freed_memory()

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,h,w,3), one size -> float32 latents (N,C,h',w') of the padded image."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (N,h,w,3), got {images.dtype} {images.shape}")
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.micro_batch):
                x = self._to_device(images[i:i + self.micro_batch]).permute(0, 3, 1, 2)
                x = pad_to_multiple(x.to(self.dtype) / 255, self.pad_multiple)
                x = x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
                out.append(self._run_encoder(self.encode_runner, x).float().cpu())
                self._after_pass()
        return torch.cat(out).numpy() if out else np.zeros((0, *self.latent_shape(*images.shape[1:3])), np.float32)

    def decode(self, latents: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """float32 latents (N,C,h',w') -> uint8 RGB (N,h,w,3) cropped to `size` = (h, w)."""
        latents = np.asarray(latents, dtype=np.float32)
        h, w = size
        _, lh, lw = self.latent_shape(h, w)
        if latents.ndim != 4 or latents.shape[1:] != (self.latent_channels, lh, lw):
            raise ValueError(
                f"latents of shape {latents.shape} do not fit a {h}x{w} image "
                f"(expected (N, {self.latent_channels}, {lh}, {lw}))"
            )
        out = []
        with torch.inference_mode():
            for i in range(0, len(latents), self.micro_batch):
                z = self._to_device(latents[i:i + self.micro_batch]).to(self.dtype)
                z = z.contiguous(memory_format=self.memory_format)
                x = self._run_decoder(self.decode_runner, z)[:, :, :h, :w]
                x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
                out.append(x.permute(0, 2, 3, 1).cpu())
                self._after_pass()
        return torch.cat(out).numpy() if out else np.zeros((0, h, w, 3), np.uint8)

    def __repr__(self) -> str:
        return (
            f"LatentModel({self.name!r}, C={self.latent_channels}, ds={self.downsample}, "
            f"device={self.device}, dtype={self.dtype}, inference={self.inference.label}, decode={self.decode_engine})"
        )
