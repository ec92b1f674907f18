"""A sweep of simulations over policies, alpha choices and cache sizes, with its tables.

What `lbdask sim` runs (the CLI only parses its options and prints): the cache and tuner
settings of a config file with per-run overrides, one trace, every combination replayed
once, and the markdown tables of `lbdask.sim.report`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lbdask.errors import ConfigError
from lbdask.sim.replay import PreparedTrace, SimResult, effective_window, prepare, simulate
from lbdask.sim.report import comparison_table, detail_table, latency_table, window_table
from lbdask.sim.settings import SimSettings, load_sim_settings
from lbdask.sim.trace import load_trace

#: Overridable settings: keyword -> (section of configs/cache.yaml, field).
OVERRIDES = {"step": ("tuner", "step"), "t_decode_ms": ("tuner", "t_decode_ms"),
             "t_fetch_ms": ("tuner", "t_fetch_ms"), "tail": ("cache", "tail"),
             "promote_after": ("cache", "promote_after")}


def sweep_settings(config: str = "cache", **overrides: Any) -> SimSettings:
    """`configs/<config>.yaml` (or a YAML path) with the non-None `overrides` applied, validated."""
    settings = load_sim_settings(config)
    for key, value in overrides.items():
        if value is not None:
            section, name = OVERRIDES[key]
            setattr(getattr(settings, section), name, value)
    try:
        settings.cache.validate()
        settings.tuner.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


@dataclass
class Sweep:
    """The runs of one sweep and what its tables need."""

    prep: PreparedTrace
    settings: SimSettings
    nodes: int
    window: int | None
    compare: str | None                      # the static alpha compared window by window, as labelled
    results: list[SimResult] = field(default_factory=list)

    @property
    def compare_window(self) -> int:
        """Requests per window of the window-by-window comparison."""
        return self.window or effective_window(self.prep.requests // self.nodes, self.settings.tuner.window)

    def tables(self) -> str:
        """Markdown: mean latency, adaptive vs static, every run, and the window comparison."""
        tuner = self.settings.tuner
        text = (f"## Mean latency (ms)\n\n{latency_table(self.results)}\n\n"
                f"## Adaptive vs static\n\n{comparison_table(self.results)}\n\n"
                f"## Every run\n\n{detail_table(self.results)}\n")
        if self.compare is not None:
            w = self.compare_window
            text += (f"\n## Window by window against static alpha={self.compare} ({w:,} requests per window)\n\n"
                     f"{window_table(self.results, self.compare, w, tuner.t_decode_ms, tuner.t_fetch_ms)}\n")
        return text


def run_sweep(trace_path: str, settings: SimSettings, fracs: Sequence[float], policies: Sequence[str],
              alphas: Sequence[tuple[float | None, str | None]], nodes: int = 1, window: int | None = None,
              lcs_columns: dict[str, int] | None = None, compare_static: float | None = None,
              on_trace: Callable[[PreparedTrace], None] | None = None,
              on_result: Callable[[SimResult], None] | None = None) -> Sweep:
    """Replay the trace once per (policy, alpha, cache fraction); `alphas` holds (static alpha
    or None for adaptive, gradient override). With `compare_static` the adaptive runs with the
    configured gradient and the static runs at that alpha keep their per-request outcomes."""
    trace = load_trace(trace_path, lcs_columns=lcs_columns, latent_ratio=settings.trace.latent_ratio)
    prep = prepare(trace)
    del trace
    if on_trace is not None:
        on_trace(prep)
    compare = None if compare_static is None else f"{compare_static:g}"
    result = Sweep(prep, settings, nodes, window, compare)
    for policy in policies:
        for alpha, gradient in alphas:
            for frac in fracs:
                keep = compare is not None and (
                    (alpha is None and gradient is None) or (alpha is not None and f"{alpha:g}" == compare))
                r = simulate(prep, frac, alpha, policy, nodes=nodes, cache=settings.cache, tuner=settings.tuner,
                             window=window, gradient=gradient, keep_outcomes=keep)
                result.results.append(r)
                if on_result is not None:
                    on_result(r)
    return result
