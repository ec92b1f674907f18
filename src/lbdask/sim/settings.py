"""`configs/cache.yaml` as the simulator reads it: the cache's sections and the trace generator's.

The cache owns `cache:` and `tuner:` (lbdask.cache.settings) and leaves `trace:` untyped, so
the cache never imports the simulator; here that section becomes a checked TraceConfig.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lbdask.cache.settings import CacheSettings
from lbdask.config import load_config
from lbdask.sim.trace import TraceConfig


@dataclass
class SimSettings(CacheSettings):
    """Everything in `configs/cache.yaml`, the `trace:` section typed."""

    trace: TraceConfig = field(default_factory=TraceConfig)  # type: ignore[assignment]


def load_sim_settings(name: str = "cache") -> SimSettings:
    """Load and validate `configs/<name>.yaml` (or an explicit YAML path), `trace:` included."""
    return load_config(name, SimSettings)
