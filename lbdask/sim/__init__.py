"""Trace-driven simulation of per-node dual-format caches (compiled kernel + reports)."""
from .replay import PreparedTrace, SimResult, effective_window, node_of, prepare, simulate

__all__ = ["PreparedTrace", "SimResult", "effective_window", "node_of", "prepare", "simulate"]
