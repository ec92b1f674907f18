"""The re-tiering policy (configs/retier.yaml), validated at load time with a clear error.

Each move has its own section with an `enabled` switch, so a nightly job can run only the
moves an operator has switched on; docs/operations.md describes every field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lbdask.access.days import check_window
from lbdask.config import load_config


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}")


@dataclass(frozen=True)
class DemotePolicy:
    """Kept PNG / JPEG XL objects cold for `cold_days` -> latent (migration's fidelity gate)."""

    enabled: bool = True
    cold_days: float = 90.0
    min_psnr: float | None = None  # None: min_psnr of configs/jobs.yaml (the migration's floor)


@dataclass(frozen=True)
class PromotePolicy:
    """Latent or lossy objects read `min_reads` times within `window_days` get a decoded PNG
    in the pixel tier; those unread for `cold_days` lose it."""

    enabled: bool = True
    window_days: float = 7.0
    min_reads: int = 20
    cold_days: float = 30.0


@dataclass(frozen=True)
class ConvertPolicy:
    """Kept PNGs -> lossless JPEG XL (`lbdask.image.kept`, kept format jxl)."""

    enabled: bool = False
    effort: int = 7


@dataclass(frozen=True)
class SourceCleanupPolicy:
    """Sources of archived objects -> a quarantine prefix; deleted after retention only if allowed."""

    enabled: bool = False
    source: str | None = None
    quarantine: str | None = None
    cold_days: float = 180.0
    retention_days: float = 30.0
    delete_after_retention: bool = False


@dataclass(frozen=True)
class ReencodePolicy:
    """Latents written by model `from` (fingerprint, a 12+ digit prefix of one, or name) ->
    latents of model `to` (configs/models.yaml name or a model folder), lbdask.retier.reencode."""

    enabled: bool = False
    from_: str | None = None  # YAML key `from`
    to: str | None = None
    weights: str | None = None  # folder with the weights of `to` (None: where configs/models.yaml says)
    min_psnr: float | None = None  # PSNR floor of the new latent; None: min_psnr of configs/jobs.yaml
    source: str | None = None  # the migrated SRC, to re-encode from source PNGs; None: source_cleanup.source


@dataclass(frozen=True)
class PrewarmPolicy:
    """The predicted-hot set (most reads within `window_days`) loaded into the caches of the
    serving cluster at `scheduler` (`ServingClient.prewarm`)."""

    enabled: bool = False
    scheduler: str | None = None
    window_days: float = 1.0
    top: int = 1000


@dataclass(frozen=True)
class RetierPolicy:
    """Every section of configs/retier.yaml."""

    unseen_is_cold: bool = True
    batch_size: int = 8
    demote: DemotePolicy = field(default_factory=DemotePolicy)
    promote: PromotePolicy = field(default_factory=PromotePolicy)
    convert: ConvertPolicy = field(default_factory=ConvertPolicy)
    source_cleanup: SourceCleanupPolicy = field(default_factory=SourceCleanupPolicy)
    reencode: ReencodePolicy = field(default_factory=ReencodePolicy)
    prewarm: PrewarmPolicy = field(default_factory=PrewarmPolicy)

    def validate(self) -> None:
        _at_least("batch_size", self.batch_size, 1)
        _at_least("demote.cold_days", self.demote.cold_days, 0)
        _at_least("promote.window_days", self.promote.window_days, 0)
        _at_least("promote.min_reads", self.promote.min_reads, 1)
        _at_least("promote.cold_days", self.promote.cold_days, 0)
        if self.promote.enabled and self.promote.cold_days < self.promote.window_days:
            raise ValueError(f"promote.cold_days ({self.promote.cold_days}) must be at least promote.window_days "
                             f"({self.promote.window_days}), or an object would be promoted and dropped at once")
        if not 1 <= self.convert.effort <= 9:
            raise ValueError(f"convert.effort must be 1 ... 9 (libjxl effort), not {self.convert.effort}")
        if self.reencode.enabled and (not self.reencode.from_ or not self.reencode.to):
            raise ValueError("reencode needs `from` (the old model's fingerprint or name) and `to` (the new model)")
        if self.reencode.min_psnr is not None and not 0 < self.reencode.min_psnr < 100:
            raise ValueError(f"reencode.min_psnr must be between 0 and 100 dB, not {self.reencode.min_psnr}")
        _at_least("prewarm.window_days", self.prewarm.window_days, 0)
        _at_least("prewarm.top", self.prewarm.top, 1)
        if self.prewarm.enabled and not self.prewarm.scheduler:
            raise ValueError("prewarm needs `scheduler`: the address of the serving cluster (lbdask serve)")
        clean = self.source_cleanup
        _at_least("source_cleanup.cold_days", clean.cold_days, 0)
        _at_least("source_cleanup.retention_days", clean.retention_days, 0)
        if clean.enabled:
            if not clean.source or not clean.quarantine:
                raise ValueError("source_cleanup needs both `source` (the migrated SRC) and `quarantine`")
            src, q = clean.source.rstrip("/") + "/", clean.quarantine.rstrip("/") + "/"
            if q.startswith(src) or src.startswith(q):
                raise ValueError(f"source_cleanup.quarantine {clean.quarantine} must lie outside the source "
                                 f"{clean.source} (a later migration would list it as new images)")


    def check_retention(self, retention_days: int) -> None:
        """ConfigError when a window of an enabled move is longer than the days of per-day
        read counts the access statistics keep (`worker.access_retention_days`)."""
        if self.promote.enabled:
            check_window("promote.window_days", self.promote.window_days, retention_days)
        if self.prewarm.enabled:
            check_window("prewarm.window_days", self.prewarm.window_days, retention_days)


def load_policy(path: str | None = None) -> RetierPolicy:
    """configs/retier.yaml, or the YAML file `path` (`--policy FILE`); ConfigError naming it."""
    return load_config(path or "retier", RetierPolicy)
