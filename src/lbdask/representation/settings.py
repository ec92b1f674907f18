"""What a job does with each image: the `migrate:` section of `configs/jobs.yaml` (`JobSettings`).

Both jobs read it: a migration decides each image's fate by it, re-tiering gates its demotes
and re-encodes with it. The CLI overrides fields with `with_overrides`; validation runs on
both paths so a bad value fails before any cluster is started.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from lbdask.archive.store import ArchiveConfig
from lbdask.cluster.settings import parse_size
from lbdask.config import config_path, load_config
from lbdask.errors import ConfigError

LatentBits = Literal[16, 8, 6, "auto"]
KeptFormat = Literal["png", "jxl"]
LossyFallback = Literal["off", "jxl", "avif", "best"]  # the searches of each: lbdask.image.kept.LOSSY_POLICIES
RefineMode = Literal["qat", "float"]


@dataclass(frozen=True)
class JobSettings:
    """What one migration does with each image (see configs/jobs.yaml for each field)."""

    model: str = "taef2"
    weights: str | None = None
    precision: str | None = None           # fp32|bf16|fp16|auto; None: the model's (configs/models.yaml)
    runtime: str | None = None             # torch|openvino|auto; None: the model's
    batch_size: int = 8
    batch_pixels: int = 8_388_608          # smaller images batch more, up to the shard size (0: off)
    latent_bits: LatentBits = 8
    min_psnr: float = 30.0
    max_latent_ratio: float = 1.0
    refine_steps: int = 0
    target_psnr: float | None = None
    refine_mode: RefineMode = "qat"        # qat: optimise the stored (quantised) latent; float: the float one
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
    lossy_avif_speed: int = 8
    compact_every_batches: int = 64        # catalog compaction during the job (0: only at its end)

    def validate(self) -> None:
        """Reject values that would make the job meaningless."""
        if self.latent_bits not in (16, 8, 6, "auto"):
            raise ValueError(f"latent_bits must be 16, 8, 6 or auto, not {self.latent_bits!r}")
        for name in ("batch_size", "min_side", "max_pixels", "bomb_pixels", "scan_group", "inflight_batches_per_thread"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.batch_pixels < 0:
            raise ValueError(f"batch_pixels must be >= 0 (0: batches of exactly batch_size), not {self.batch_pixels}")
        if self.compact_every_batches < 0:
            raise ValueError(f"compact_every_batches must be >= 0 (0: compact only at the end), not {self.compact_every_batches}")
        if self.max_latent_ratio <= 0:
            raise ValueError(f"max_latent_ratio must be > 0, not {self.max_latent_ratio}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, not {self.refine_steps}")
        if self.refine_mode not in ("qat", "float"):
            raise ValueError(f"refine_mode must be qat or float, not {self.refine_mode!r}")
        if self.kept_format not in ("png", "jxl"):
            raise ValueError(f"kept_format must be png or jxl, not {self.kept_format!r}")
        if self.lossy_fallback not in get_args(LossyFallback):
            raise ValueError(f"lossy_fallback must be off, jxl, avif or best, not {self.lossy_fallback!r}")
        if not 0 <= self.lossy_avif_speed <= 10:
            raise ValueError(f"lossy_avif_speed must be 0 ... 10 (libavif speed), not {self.lossy_avif_speed}")
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
class _JobsFile:
    migrate: JobSettings


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


def bits_for(settings: JobSettings) -> tuple[int, ...]:
    """The precisions a batch may write: one, or all candidates with `auto`."""
    from lbdask.latent.codec import SUPPORTED_BITS  # numpy, numcodecs: not for reading settings

    return SUPPORTED_BITS if settings.latent_bits == "auto" else (settings.latent_bits,)
