"""Trace-driven simulation of per-node dual-format caches (compiled kernel + reports).

Attributes load lazily (PEP 562): `lbdask.sim.dist` or `.cluster_config` must not pull in
the numba kernel when the CLI only builds its parsers.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PreparedTrace", "SimResult", "effective_window", "node_of", "prepare", "simulate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lbdask.sim import replay

        return getattr(replay, name)
    raise AttributeError(f"module 'lbdask.sim' has no attribute {name!r}")
