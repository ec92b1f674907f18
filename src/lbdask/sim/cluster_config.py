"""What one simulated cluster configuration is (`lbdask sim-cluster` options), without the simulator.

Kept apart from `cluster.py` so the CLI can show the defaults without importing the caches,
the tuner and numba at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass

from lbdask.errors import ConfigError
from lbdask.sim.dist import Dist

#: --alpha words besides numbers: the tuned cache and the two paper baselines of Table 4.
MODES = ("adaptive", "adaptive-per-byte", "adaptive-paper", "decode-all", "imgstore")


@dataclass
class ClusterConfig:
    """One simulated configuration; defaults are the paper's (sections 6.1, 6.3, 6.5.3)."""

    nodes: int = 6
    gpus_per_node: int = 1
    decode_ms: Dist = Dist("const", 32.6)          # SD3.5 VAE decode on an H100 (Table 1)
    fetch_ms: Dist = Dist("uniform", 100.0, 150.0)  # object-store fetch of a latent
    png_fetch_ms: Dist = Dist("uniform", 130.0, 190.0)  # ImgStore: fetch of the full PNG
    network_ms: Dist = Dist("const", 10.0)          # response transfer node -> router
    ship_ms: float = 2.0                            # owner's latent shipped to a spillover node
    theta: float = 4.0                              # spillover threshold (queue depth)
    spillover: bool = True
    coalesce: bool = True
    alpha: str = "adaptive"                         # a MODES word or a static image fraction
    cache_frac: float = 0.01                        # per-node cache, fraction of the trace's WSS
    warmup: float = 0.5                             # leading fraction of requests that only warm caches
    seed: int = 0

    def validate(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ConfigError(f"sim-cluster: need nodes >= 1 and gpus per node >= 1, got {self.nodes}, "
                              f"{self.gpus_per_node}")
        if self.alpha not in MODES:
            try:
                a = float(self.alpha)
            except ValueError:
                raise ConfigError(f"sim-cluster: --alpha takes {', '.join(MODES)} or a number in [0, 1], "
                                  f"got {self.alpha!r}") from None
            if not 0.0 <= a <= 1.0:
                raise ConfigError(f"sim-cluster: alpha must be in [0, 1], got {self.alpha}")
        if not 0 < self.cache_frac <= 1 or not 0 <= self.warmup < 1:
            raise ConfigError("sim-cluster: need 0 < cache fraction <= 1 and 0 <= warmup < 1")
        if self.theta < 0 or self.ship_ms < 0:
            raise ConfigError("sim-cluster: theta and ship time must be >= 0")
