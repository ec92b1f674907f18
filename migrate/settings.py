"""Typed job and cluster settings, read from `configs/jobs.yaml` and `configs/cluster.yaml`.

The CLI overrides fields with `dataclasses.replace`; validation runs on both paths so a
bad value fails before any cluster is started.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from lbdask.config import load_config
from lbdask.errors import ConfigError

LatentBits = Literal[16, 8, 6, "auto"]


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
    shard_size: int = 64

    def validate(self) -> None:
        """Reject values that would make the job meaningless."""
        if self.latent_bits not in (16, 8, 6, "auto"):
            raise ValueError(f"latent_bits must be 16, 8, 6 or auto, not {self.latent_bits!r}")
        for name in ("batch_size", "min_side", "max_pixels", "bomb_pixels", "scan_group", "inflight_batches_per_thread", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_latent_ratio <= 0:
            raise ValueError(f"max_latent_ratio must be > 0, not {self.max_latent_ratio}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, not {self.refine_steps}")
        if self.batch_size > self.shard_size:
            raise ValueError(f"batch_size {self.batch_size} must not exceed shard_size {self.shard_size}: a batch owns whole shards")
        if self.max_pixels > self.bomb_pixels:
            raise ValueError(f"max_pixels {self.max_pixels} must not exceed bomb_pixels {self.bomb_pixels}")

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

    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"
    gpu_resource: str = "GPU"


@dataclass(frozen=True)
class _JobsFile:
    migrate: JobSettings


@dataclass(frozen=True)
class _ClusterFile:
    cluster: ClusterSettings


def load_job_settings() -> JobSettings:
    """The validated `migrate:` section of configs/jobs.yaml."""
    return load_config("jobs", _JobsFile).migrate


def load_cluster_settings() -> ClusterSettings:
    """The validated `cluster:` section of configs/cluster.yaml."""
    return load_config("cluster", _ClusterFile).cluster
