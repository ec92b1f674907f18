"""Tables (markdown) and plots of cluster simulations: Table 4, Fig. 10, per-node load, scaling."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lbdask.sim.cluster import ClusterResult

NAMES = {"decode-all": "Decode-All", "imgstore": "ImgStore", "1": "LB-ImgCache (alpha=1)",
         "0": "LB-LatentCache (alpha=0)", "adaptive": "LB-Adaptive",
         "adaptive-per-byte": "LB-Adaptive, tail hits per byte", "adaptive-paper": "LB-Adaptive, eq. 2 as printed"}
ORDER = ["decode-all", "imgstore", "1", "0", "adaptive", "adaptive-per-byte", "adaptive-paper"]


def label(alpha: str) -> str:
    return NAMES.get(alpha, f"static alpha={alpha}")


def _key(r: ClusterResult) -> tuple:
    a = r.config.alpha
    return (r.config.nodes, ORDER.index(a) if a in ORDER else len(ORDER), a, not r.config.spillover,
            not r.config.coalesce)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def latency_table(results: Sequence[ClusterResult]) -> str:
    """Table 4 shape plus tier fractions, spillover and coalescing counts, one row per run."""
    out = ["| nodes | configuration | spillover | coalesce | mean ms | P50 | P95 | P99 | image / latent / miss "
           "/ coalesced | spilled | queue wait mean / P99 ms | GPU busy mean / max |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=_key):
        row, c = r.row(), r.config
        out.append(f"| {c.nodes} | {label(c.alpha)} | {_on(c.spillover)} | {_on(c.coalesce)} | {row['mean_ms']:.1f} "
                   f"| {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | "
                   f"{row['image_frac']:.3f} / {row['latent_frac']:.3f} / {row['miss_frac']:.3f} / "
                   f"{row['coalesced_frac']:.3f} | {r.spilled:,} | {row['queue_wait_mean_ms']:.1f} / "
                   f"{row['queue_wait_p99_ms']:.1f} | {row['gpu_busy_mean']:.2f} / {row['gpu_busy_max']:.2f} |")
    return "\n".join(out)


def spillover_table(results: Sequence[ClusterResult]) -> str:
    """Fig. 10: each configuration with spillover against the same one without."""
    off = {(r.config.nodes, r.config.alpha, r.config.coalesce): r for r in results if not r.config.spillover}
    out = ["| nodes | configuration | mean off -> on ms | change | P99 off -> on ms | change | "
           "queue wait P99 off -> on ms | spilled |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=_key):
        base = off.get((r.config.nodes, r.config.alpha, r.config.coalesce))
        if not r.config.spillover or base is None:
            continue
        a, b = base.row(), r.row()
        out.append(f"| {r.config.nodes} | {label(r.config.alpha)} | {a['mean_ms']:.1f} -> {b['mean_ms']:.1f} | "
                   f"{100 * (b['mean_ms'] / a['mean_ms'] - 1):+.1f} % | {a['p99_ms']:.1f} -> {b['p99_ms']:.1f} | "
                   f"{100 * (b['p99_ms'] / a['p99_ms'] - 1):+.1f} % | {a['queue_wait_p99_ms']:.1f} -> "
                   f"{b['queue_wait_p99_ms']:.1f} | {r.spilled:,} |")
    return "\n".join(out)


def node_table(r: ClusterResult) -> str:
    """Per-node load, queue depth and cache bytes of one run."""
    out = ["| node | owned requests | decodes run | GPU busy | mean / max queue depth at dispatch | cache MB | alpha |",
           "|---|---|---|---|---|---|---|"]
    for i in range(r.config.nodes):
        out.append(f"| {i} | {r.owner_requests[i]:,} | {r.node_decodes[i]:,} | {r.busy_frac[i]:.2f} | "
                   f"{r.depth_mean[i]:.2f} / {r.depth_max[i]} | {r.cache_bytes[i] / 1e6:.1f} | {r.node_alpha[i]:.3f} |")
    return "\n".join(out)


def scaling_table(results: Sequence[ClusterResult]) -> str:
    """One row per node count: latency, load imbalance and simulator speed."""
    out = ["| nodes | configuration | spillover | requests | mean ms | P99 ms | max/mean owned load | "
           "max GPU busy | spilled | simulated requests/s (wall) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=_key):
        row = r.row()
        out.append(f"| {r.config.nodes} | {label(r.config.alpha)} | {_on(r.config.spillover)} | {r.requests:,} | "
                   f"{row['mean_ms']:.1f} | {row['p99_ms']:.1f} | {row['owner_load_max_over_mean']:.2f} | "
                   f"{row['gpu_busy_max']:.2f} | {r.spilled:,} | {row['requests_per_s']:,.0f} |")
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cdf(results: Sequence[ClusterResult], path: str | Path) -> None:
    """Fig. 7a shape: latency CDF per configuration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in sorted(results, key=_key):
        lat = np.sort(r.latency_ms)
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=f"{label(r.config.alpha)}"
                + ("" if r.config.spillover else ", no spillover"))
    ax.set_xscale("log")
    ax.set_xlabel("read latency (ms)")
    ax.set_ylabel("CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_spillover(rows: Sequence[dict], path: str | Path) -> None:
    """Fig. 10 shape: mean, P99 and queue-wait P99 with and without spillover (`row()` dicts or `--json` lines)."""
    plt = _pyplot()
    pairs: dict[tuple, dict] = {}
    for r in rows:
        pairs.setdefault((r["nodes"], r["alpha"], r["coalesce"]), {})[r["spillover"]] = r
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}
    measures = [("mean_ms", "mean"), ("p99_ms", "P99"), ("queue_wait_p99_ms", "queue wait P99")]
    fig, axes = plt.subplots(1, len(pairs) or 1, figsize=(5.5 * max(len(pairs), 1), 3.8), squeeze=False)
    for ax, ((nodes, alpha, coalesce), v) in zip(axes[0], sorted(pairs.items())):
        x = np.arange(len(measures))
        for k, (flag, name) in enumerate(((False, "without spillover"), (True, "with spillover"))):
            bars = ax.bar(x + (k - 0.5) * 0.38, [v[flag][m] for m, _ in measures], 0.38, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, [m[1] for m in measures])
        ax.set_ylabel("ms")
        ax.set_title(f"{label(alpha)}, {nodes} nodes, coalescing {_on(coalesce)}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scaling(results: Sequence[dict], path: str | Path) -> None:
    """Mean and P99 latency and the load imbalance against the node count (`row()` dicts or `--json` lines)."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["alpha"], r["spillover"]), []).append(r)
    for (alpha, spill), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r["nodes"])
        n = [r["nodes"] for r in rows]
        name = f"{label(alpha)}, spillover {_on(spill)}"
        a1.plot(n, [x["mean_ms"] for x in rows], "o-", label=f"mean, {name}")
        a1.plot(n, [x["p99_ms"] for x in rows], "s--", label=f"P99, {name}")
        a2.plot(n, [x["owner_load_max_over_mean"] for x in rows], "o-", label=f"owned load, {name}")
        a2.plot(n, [x["gpu_busy_max"] / max(x["gpu_busy_mean"], 1e-9) for x in rows], "s--",
                label=f"GPU busy, {name}")
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    a1.set_ylabel("latency (ms)")
    a2.set_ylabel("busiest node / mean")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
