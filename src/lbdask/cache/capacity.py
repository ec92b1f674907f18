"""Integer byte budgets of tiers and segments, shared by the Python cache and the simulator.

Both implementations call these compiled functions so their capacities agree to the byte.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def image_capacity(total: int, alpha: float) -> int:
    """Bytes of the image tier for a total budget split alpha / (1 - alpha)."""
    return int(alpha * total)


@njit(cache=True)
def tail_capacity(tier: int, tail_fraction: float) -> int:
    """Bytes of a tier's tail segment (the rest is its main segment)."""
    return int(tier * tail_fraction)


@njit(cache=True)
def small_capacity(main: int, small_fraction: float) -> int:
    """Bytes of the S3-FIFO small queue inside a main segment."""
    return int(main * small_fraction)
