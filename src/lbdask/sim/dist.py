"""Service-time distributions for the cluster simulator, parsed from short command-line text.

`const:32.6`, `uniform:100:150`, `lognormal:MEAN:SIGMA` (MEAN of the distribution in ms,
SIGMA of the underlying normal) or a bare number (constant). Samples are drawn in blocks
with numpy so the event loop only indexes Python lists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbdask.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

KINDS = ("const", "uniform", "lognormal")


@dataclass(frozen=True)
class Dist:
    """A non-negative distribution of milliseconds."""

    kind: str
    a: float
    b: float = 0.0

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws (float64 ms)."""
        import numpy as np  # here: every `lbdask` command parses `sim-cluster`'s options, few sample

        if self.kind == "const":
            return np.full(n, self.a)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, n)
        mu = math.log(self.a) - self.b ** 2 / 2 if self.a > 0 else -math.inf
        return rng.lognormal(mu, self.b, n) if self.a > 0 else np.zeros(n)

    def __str__(self) -> str:
        if self.kind == "const":
            return f"const:{self.a:g}"
        return f"{self.kind}:{self.a:g}:{self.b:g}"


def parse_dist(text: str, what: str = "distribution") -> Dist:
    """`const:X` | `uniform:LO:HI` | `lognormal:MEAN:SIGMA` | `X`; a one-line error otherwise."""
    parts = str(text).split(":")
    try:
        nums = [float(p) for p in parts[1:]] if len(parts) > 1 else [float(parts[0])]
    except ValueError:
        nums = None
    kind = parts[0] if len(parts) > 1 else "const"
    arity = {"const": 1, "uniform": 2, "lognormal": 2}
    if nums is None or kind not in arity or len(nums) != arity[kind] or any(
            not math.isfinite(v) or v < 0 for v in nums) or (kind == "uniform" and nums[0] > nums[1]):
        raise ConfigError(f"{what}: expected const:X, uniform:LO:HI (LO <= HI) or lognormal:MEAN:SIGMA with "
                          f"non-negative numbers, got {text!r}")
    return Dist(kind, *nums)
