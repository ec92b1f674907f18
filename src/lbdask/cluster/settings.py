"""Typed job and cluster settings, read from `configs/jobs.yaml` and `configs/cluster.yaml`.

The CLI overrides fields with `dataclasses.replace`; validation runs on both paths so a
bad value fails before any cluster is started.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from lbdask.archive.store import ArchiveConfig
from lbdask.config import config_path, load_config
from lbdask.errors import ConfigError

LatentBits = Literal[16, 8, 6, "auto"]
KeptFormat = Literal["png", "jxl"]
LossyFallback = Literal["off", "jxl"]


@dataclass(frozen=True)
class JobSettings:
    """What one migration does with each image (see configs/jobs.yaml for each field)."""

    model: str = "taef2"
    weights: str | None = None
    precision: str | None = None           # fp32|bf16|fp16|auto; None: the model's (configs/models.yaml)
    runtime: str | None = None             # torch|openvino|auto; None: the model's
    batch_size: int = 8
    latent_bits: LatentBits = 8
    min_psnr: float = 30.0
    max_latent_ratio: float = 1.0
    refine_steps: int = 0
    target_psnr: float | None = None
    min_side: int = 32
    max_pixels: int = 16_777_216
    bomb_pixels: int = 89_478_485
    scan_group: int = 64
    inflight_batches_per_thread: int = 2
    memory_target: str | None = "5GiB"     # a worker's memory the batches in flight are planned for
    kept_format: KeptFormat = "png"
    lossy_fallback: LossyFallback = "off"
    jxl_effort: int = 7
    lossy_jxl_effort: int = 3

    def validate(self) -> None:
        """Reject values that would make the job meaningless."""
        if self.latent_bits not in (16, 8, 6, "auto"):
            raise ValueError(f"latent_bits must be 16, 8, 6 or auto, not {self.latent_bits!r}")
        for name in ("batch_size", "min_side", "max_pixels", "bomb_pixels", "scan_group", "inflight_batches_per_thread"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_latent_ratio <= 0:
            raise ValueError(f"max_latent_ratio must be > 0, not {self.max_latent_ratio}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, not {self.refine_steps}")
        if self.kept_format not in ("png", "jxl"):
            raise ValueError(f"kept_format must be png or jxl, not {self.kept_format!r}")
        if self.lossy_fallback not in ("off", "jxl"):
            raise ValueError(f"lossy_fallback must be off or jxl, not {self.lossy_fallback!r}")
        for name in ("jxl_effort", "lossy_jxl_effort"):
            if not 1 <= getattr(self, name) <= 9:
                raise ValueError(f"{name} must be 1 ... 9 (libjxl effort), not {getattr(self, name)}")
        if self.max_pixels > self.bomb_pixels:
            raise ValueError(f"max_pixels {self.max_pixels} must not exceed bomb_pixels {self.bomb_pixels}")
        if self.memory_target is not None:
            parse_size(self.memory_target, "memory_target")

    @property
    def memory_target_bytes(self) -> int | None:
        """`memory_target` in bytes (None: plan for the workers' memory limits alone)."""
        return None if self.memory_target is None else parse_size(self.memory_target, "memory_target")

    def with_overrides(self, **changes: object) -> JobSettings:
        """A copy with the non-None `changes` applied and validated (CLI options)."""
        new = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        try:
            new.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return new


@dataclass(frozen=True)
class ClusterSettings:
    """How the embedded local cluster is sized (see configs/cluster.yaml)."""

    n_workers: int | None = None          # None: one per CUDA device, else one per 2 CPU cores
    threads_per_worker: int | None = None  # None: CPU cores / n_workers
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"
    gpu_resource: str = "GPU"

    def validate(self) -> None:
        """Reject sizes Dask would hang on, silently change or fail on only once the cluster starts."""
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, or null for one per CUDA device (else one per "
                             f"2 CPU cores), not {self.n_workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be at least 1, or null for CPU cores / n_workers, "
                             f"not {self.threads_per_worker}")
        if self.memory_limit != "auto":
            parse_size(self.memory_limit, "memory_limit", "'auto' or ", " (0: no limit)", minimum=0)
        if not self.gpu_resource:
            raise ValueError("gpu_resource must not be empty")


def parse_size(text: object, name: str, choices: str = "", note: str = "", minimum: int = 1) -> int:
    """Bytes of a Dask size such as '4GiB' or '500MB'; a one-line error naming `name` otherwise."""
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except (ValueError, TypeError):
        size = -1
    if size < minimum:
        raise ValueError(f"{name} must be {choices}a size such as '4GiB' or '500MB'{note}, not {text!r}")
    return size


@dataclass(frozen=True)
class _JobsFile:
    migrate: JobSettings


@dataclass(frozen=True)
class _ClusterFile:
    cluster: ClusterSettings


def load_job_settings(**overrides: object) -> JobSettings:
    """The validated `migrate:` section of configs/jobs.yaml with the non-None `overrides` (CLI
    options) applied, its batch size checked against the shard size of configs/archive.yaml."""
    settings = load_config("jobs", _JobsFile).migrate.with_overrides(**overrides)
    check_batch_fits_shard(settings.batch_size, load_config("archive", ArchiveConfig).shard_size,
                           str(config_path("archive")))
    return settings


def check_batch_fits_shard(batch_size: int, shard_size: int, where: str) -> None:
    """A batch owns whole shards: its latents of one precision must fit in one shard."""
    if batch_size > shard_size:
        raise ConfigError(f"{where}: batch size {batch_size} is larger than the shard size {shard_size} "
                          f"(a batch owns whole shards): use --batch-size {shard_size} or less")


def load_cluster_settings() -> ClusterSettings:
    """The validated `cluster:` section of configs/cluster.yaml."""
    return load_config("cluster", _ClusterFile).cluster
