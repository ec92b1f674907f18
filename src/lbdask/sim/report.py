"""Tables (markdown) and the alpha-trajectory plot of a set of simulation results."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lbdask.sim.replay import SimResult

SINGLE_FORMAT = {"1": "LB-ImgCache (alpha=1)", "0": "LB-LatentCache (alpha=0)", "adaptive": "LB-Adaptive",
                 "adaptive-per-byte": "LB-Adaptive, tail hits per byte",
                 "adaptive-paper": "LB-Adaptive, eq. 2 as printed"}


def _label(alpha: str) -> str:
    return SINGLE_FORMAT.get(alpha, f"static alpha={alpha}")


def _alpha_order(alpha: str) -> tuple:
    if alpha.startswith("adaptive"):
        return (3, alpha)
    return (0, "") if alpha == "1" else (1, "") if alpha == "0" else (2, alpha)


def latency_table(results: Sequence[SimResult]) -> str:
    """Table 6 shape: one row per (policy, configuration), mean latency (ms) per cache size."""
    fracs = sorted({r.cache_frac for r in results})
    rows = sorted({(r.policy, r.alpha) for r in results}, key=lambda k: (k[0], _alpha_order(k[1])))
    cell = {(r.policy, r.alpha, r.cache_frac): r for r in results}
    out = ["| policy | configuration | " + " | ".join(f"{100 * f:g}%" for f in fracs) + " |",
           "|---|---|" + "---|" * len(fracs)]
    for policy, alpha in rows:
        vals = [cell.get((policy, alpha, f)) for f in fracs]
        out.append(f"| {policy} | {_label(alpha)} | "
                   + " | ".join(f"{v.mean_latency_ms:.1f}" if v else "" for v in vals) + " |")
    return "\n".join(out)


def detail_table(results: Sequence[SimResult]) -> str:
    """Every run: outcome fractions, final alpha (node 0 for adaptive), replay speed."""
    out = ["| policy | configuration | cache | latency ms | image | latent | miss | final alpha | Mreq/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r.policy, _alpha_order(r.alpha), r.cache_frac)):
        row = r.row()
        fa = f"{row['final_alpha']:.3f}" if row["final_alpha"] is not None else "-"
        out.append(f"| {r.policy} | {_label(r.alpha)} | {100 * r.cache_frac:g}% | {r.mean_latency_ms:.2f} | "
                   f"{row['image_frac']:.3f} | {row['latent_frac']:.3f} | {row['miss_frac']:.3f} | {fa} | "
                   f"{row['requests_per_s'] / 1e6:.2f} |")
    return "\n".join(out)


def comparison_table(results: Sequence[SimResult]) -> str:
    """Adaptive against the better single format and against the best static alpha, per size."""
    by = {(r.policy, r.alpha, r.cache_frac): r for r in results}
    out = ["| policy | cache | adaptive ms | best single format ms | best static (alpha) ms | adaptive vs best static |",
           "|---|---|---|---|---|---|"]
    for policy, frac in sorted({(r.policy, r.cache_frac) for r in results}):
        ad = by.get((policy, "adaptive", frac))
        if ad is None:
            continue
        singles = [by[k] for k in ((policy, "0", frac), (policy, "1", frac)) if k in by]
        statics = [r for r in results if r.policy == policy and r.cache_frac == frac
                   and not r.alpha.startswith("adaptive")]
        best_single = min(singles, key=lambda r: r.mean_latency_ms, default=None)
        best_static = min(statics, key=lambda r: r.mean_latency_ms, default=None)
        bs = f"{best_single.mean_latency_ms:.2f}" if best_single else "-"
        if best_static:
            rel = 100 * (ad.mean_latency_ms / best_static.mean_latency_ms - 1)
            st, vs = f"{best_static.mean_latency_ms:.2f} ({best_static.alpha})", f"{rel:+.2f}%"
        else:
            st = vs = "-"
        out.append(f"| {policy} | {100 * frac:g}% | {ad.mean_latency_ms:.2f} | {bs} | {st} | {vs} |")
    return "\n".join(out)


def plot_alpha(results: Sequence[SimResult], path: str | Path) -> None:
    """alpha after each window against requests replayed (node 0): one panel per policy and
    gradient, one colour per cache size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adaptive = [r for r in results if r.alpha.startswith("adaptive") and len(r.traj_alpha)]
    panels = sorted({(r.policy, r.alpha) for r in adaptive})
    fracs = sorted({r.cache_frac for r in adaptive})
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, len(fracs))))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4), squeeze=False)
    for ax, (policy, alpha) in zip(axes[0], panels):
        for r in sorted((r for r in adaptive if (r.policy, r.alpha) == (policy, alpha)), key=lambda r: r.cache_frac):
            node0 = r.traj_node == 0
            ax.plot(r.traj_index[node0] / 1e6, r.traj_alpha[node0], color=colours[fracs.index(r.cache_frac)],
                    lw=1, label=f"{100 * r.cache_frac:g}% of WSS")
        ax.set_title(f"{_label(alpha)}, {policy} tiers", fontsize=10)
        ax.set_xlabel("requests replayed (millions)")
        ax.set_ylabel("alpha (image fraction)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def window_latencies(result: SimResult, window: int, t_decode: float, t_fetch: float) -> np.ndarray:
    """Mean modelled latency (ms) of each full window of `window` requests (needs outcomes)."""
    cost = np.array([0.0, t_decode, t_decode + t_fetch])[result.outcomes]
    n = len(cost) // window * window
    return cost[:n].reshape(-1, window).mean(axis=1)


def _pairs(results: Sequence[SimResult], static: str):
    by = {(r.policy, r.alpha, r.cache_frac): r for r in results if r.outcomes is not None}
    for (policy, alpha, frac), ad in sorted(by.items()):
        if alpha == "adaptive" and (policy, static, frac) in by:
            yield ad, by[(policy, static, frac)]


def window_table(results: Sequence[SimResult], static: str, window: int, t_decode: float,
                 t_fetch: float) -> str:
    """Per cache size: share of windows where adaptive matches or beats the static alpha."""
    out = [f"| policy | cache | windows | adaptive <= alpha={static} | median gain | worst window | best window |",
           "|---|---|---|---|---|---|---|"]
    for ad, st in _pairs(results, static):
        a = window_latencies(ad, window, t_decode, t_fetch)
        b = window_latencies(st, window, t_decode, t_fetch)
        gain = 100 * (b - a) / np.maximum(b, 1e-9)
        out.append(f"| {ad.policy} | {100 * ad.cache_frac:g}% | {len(a)} | {100 * np.mean(a <= b):.0f}% | "
                   f"{np.median(gain):+.1f}% | {gain.min():+.1f}% | {gain.max():+.1f}% |")
    return "\n".join(out)


def plot_window_gain(results: Sequence[SimResult], static: str, window: int, t_decode: float,
                     t_fetch: float, path: str | Path) -> None:
    """Fig. 9 shape: per-window latency gain over a static alpha, with the alpha trajectory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(_pairs(results, static))
    fig, axes = plt.subplots(2, max(1, len(pairs)), figsize=(4 * max(1, len(pairs)), 5.5),
                             squeeze=False, sharex="col")
    for col, (ad, st) in enumerate(pairs):
        a = window_latencies(ad, window, t_decode, t_fetch)
        b = window_latencies(st, window, t_decode, t_fetch)
        x = (np.arange(len(a)) + 1) * window / 1e6
        axes[0, col].plot(x, 100 * (b - a) / np.maximum(b, 1e-9), lw=0.6)
        axes[0, col].axhline(0, color="k", lw=0.5)
        axes[0, col].set_title(f"{ad.policy}, {100 * ad.cache_frac:g}% of WSS")
        axes[0, col].set_ylabel(f"gain over alpha={static} (%)")
        node0 = ad.traj_node == 0
        axes[1, col].plot(ad.traj_index[node0] / 1e6, ad.traj_alpha[node0])
        axes[1, col].set_ylim(0, 1)
        axes[1, col].set_ylabel("alpha")
        axes[1, col].set_xlabel("requests (millions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
