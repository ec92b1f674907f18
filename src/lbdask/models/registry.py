"""The named-model registry (`configs/models.yaml`) and where each model's weights are found.

Keeping names, latent geometry and weight locations in one validated file lets the CLI,
the migration workers and the serving workers agree on a model by name alone.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from lbdask.config import load_config
from lbdask.errors import NotFoundError

Architecture = Literal["tae", "diffusers-kl"]
CudaDtype = Literal["fp16", "bf16", "fp32"]
DecodeEngineName = Literal["auto", "eager", "compile", "tensorrt"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]
RuntimeName = Literal["auto", "torch", "openvino"]

#: The checkout's root when lbdask runs from one: relative weight folders in the registry are
#: resolved against it first (in an installed wheel this is site-packages: the CWD decides).
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class WeightsSource:
    """Where a model's weights come from: a local folder (with an env override) or a hub id."""

    local: str | None = None
    env: str | None = None
    hub_id: str | None = None
    subfolder: str | None = None
    encoder_file: str = "encoder.pth"
    decoder_file: str = "decoder.pth"


@dataclass
class ModelSpec:
    """One model's architecture, latent geometry, tiling and precision settings.

    `architecture` is the network family; `runtime` (torch|openvino) what runs it on the CPU;
    `decode_engine` how torch runs the decoder on the numpy path (docs/glossary.md).
    """

    #: old key spellings of configs/models.yaml, read with a DeprecationWarning until the next release
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"backend": "architecture", "decode_backend": "decode_engine"}

    architecture: Architecture
    latent_channels: int | None = None
    downsample: int = 8
    pad_multiple: int = 8
    tile_threshold: int = 2048 * 2048
    tile_size: int = 1024
    tile_overlap: int = 64
    activation_bytes_per_pixel: int = 1600
    batch_size: int = 8
    cpu_batch_size: int = 1
    cuda_dtype: CudaDtype = "bf16"
    decode_engine: DecodeEngineName = "auto"
    precision: PrecisionName = "auto"
    runtime: RuntimeName = "auto"
    scaling_factor: float | None = None
    shift_factor: float | None = None
    weights: WeightsSource = field(default_factory=WeightsSource)

    def validate(self) -> None:
        """Reject geometry that would break padding or tile alignment."""
        if self.downsample < 1 or self.pad_multiple % self.downsample:
            raise ValueError(f"pad_multiple {self.pad_multiple} must be a multiple of downsample {self.downsample}")
        if self.tile_size % self.downsample or self.tile_overlap % self.downsample:
            raise ValueError(f"tile_size and tile_overlap must be multiples of downsample {self.downsample}")
        if not 0 <= 2 * self.tile_overlap < self.tile_size:
            raise ValueError(f"tile_overlap {self.tile_overlap} must be under half of tile_size {self.tile_size}")
        if min(self.batch_size, self.cpu_batch_size, self.tile_threshold, self.activation_bytes_per_pixel) < 1:
            raise ValueError("batch_size, cpu_batch_size, tile_threshold and activation_bytes_per_pixel must be positive")
        if self.architecture == "tae" and self.latent_channels is None:
            raise ValueError("a tae model needs latent_channels")
        if self.scaling_factor is not None and self.scaling_factor == 0:
            raise ValueError("scaling_factor must not be 0")


@dataclass
class ModelsConfig:
    """The whole `configs/models.yaml`: model name -> spec."""

    models: dict[str, ModelSpec]


def load_registry() -> ModelsConfig:
    """Read and validate `configs/models.yaml`."""
    return load_config("models", ModelsConfig)


def spec_for_path(latent_channels: int | None = None) -> ModelSpec:
    """The spec used for a local folder or hub id that is not a registry name."""
    return ModelSpec(architecture="diffusers-kl", latent_channels=latent_channels)


def with_weights(spec: ModelSpec, weights: str | os.PathLike | None) -> ModelSpec:
    """A copy of `spec` whose weights come from `weights` (the `--weights DIR` override)."""
    if weights is None:
        return spec
    source = dataclasses.replace(spec.weights, local=str(weights), env=None)
    return dataclasses.replace(spec, weights=source)


def candidate_folders(source: WeightsSource, explicit: bool) -> list[Path]:
    """Folders to look in, in order: env override, then the repo root, then the CWD."""
    if source.env and not explicit and os.environ.get(source.env):
        return [Path(os.environ[source.env]).expanduser()]
    if source.local is None:
        return []
    path = Path(source.local).expanduser()
    if path.is_absolute() or explicit:
        return [path.resolve()]
    return [(REPO_ROOT / path).resolve(), (Path.cwd() / path).resolve()]


def find_tae_weights(name: str, spec: ModelSpec, explicit: bool) -> tuple[Path, Path]:
    """The encoder and decoder `.pth` files of a tae model, or NotFoundError naming what was tried."""
    source = spec.weights
    tried = candidate_folders(source, explicit)
    for folder in tried:
        enc, dec = folder / source.encoder_file, folder / source.decoder_file
        if enc.is_file() and dec.is_file():
            return enc, dec
    where = ", ".join(str(p) for p in tried) or "(no folder configured)"
    hint = f"pass --weights DIR (a folder with {source.encoder_file} and {source.decoder_file})"
    if source.env:
        hint += f" or set {source.env}"
    raise NotFoundError(f"weights for model '{name}' not found in {where}; {hint}")
