"""Typed contents of `configs/cache.yaml`: cache and tuner parameters (its `trace:` section
belongs to the simulator's trace generator: lbdask.sim.settings)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lbdask.cache.promotion import PromoteAfter
from lbdask.cache.tuner import TunerConfig
from lbdask.config import load_config


@dataclass
class CacheConfig:
    """Dual-format cache parameters (paper section 4.2; defaults from section 6.5)."""

    policy: Literal["lru", "s3fifo"] = "lru"
    adaptive: bool = True           # tune alpha online; else alpha stays at tuner.alpha
    tail: float = 0.10              # tau: fraction of each tier that is its tail segment
    promote_after: PromoteAfter = "auto"   # h: latent hits before promotion, or auto (cache/promotion.py)
    s3fifo_small: float = 0.10      # S3-FIFO small-queue fraction of a main segment
    s3fifo_move_after: int = 1      # S3-FIFO: hits in the small queue that earn the main queue

    def validate(self) -> None:
        if not 0.0 <= self.tail < 1.0:
            raise ValueError("tail must be in [0, 1)")
        if self.promote_after != "auto" and (isinstance(self.promote_after, bool)
                                             or not isinstance(self.promote_after, int) or self.promote_after < 0):
            raise ValueError(f"promote_after must be auto or an integer >= 0, got {self.promote_after!r}")
        if not 0.0 < self.s3fifo_small < 1.0 or self.s3fifo_move_after < 1:
            raise ValueError("need 0 < s3fifo_small < 1 and s3fifo_move_after >= 1")


@dataclass
class CacheSettings:
    """`configs/cache.yaml` as the cache reads it."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    #: the trace generator's section, left as read: lbdask.sim.settings.SimSettings types and checks it
    trace: dict[str, Any] = field(default_factory=dict)


def load_cache_settings(name: str = "cache") -> CacheSettings:
    """Load and validate `configs/<name>.yaml` (or an explicit YAML path)."""
    return load_config(name, CacheSettings)
