"""`lbdask sim TRACE`: replay a trace through per-node dual-format caches and report latency."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lbdask.cli.options import add_list_option, list_values
from lbdask.errors import ConfigError

DEFAULT_FRACS = ("0.001", "0.005", "0.01", "0.02", "0.05", "0.1")


#: --alpha words for adaptive runs -> gradient (None: the configured one)
ADAPTIVE = {"adaptive": None, "adaptive-paper": "paper", "adaptive-per-byte": "per_byte"}


def _alphas(values: list[str]) -> list[tuple[float | None, str | None]]:
    """(static alpha or None, gradient override) per --alpha word."""
    def one(v: str) -> tuple[float | None, str | None]:
        return (None, ADAPTIVE[v]) if v in ADAPTIVE else (float(v), None)

    return list_values(values, one, "--alpha", f"{', '.join(ADAPTIVE)} or a number")


def _promote_after(text: str) -> int | str:
    """--promote-after: `auto` or an integer (validated with the cache settings)."""
    return text if text == "auto" else int(text)


def _lcs_columns(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    names = {"time": "time_col", "id": "id_col", "size": "size_col"}
    try:
        pairs = dict(item.split("=") for item in text.split(","))
        return {names[k]: int(v) for k, v in pairs.items()}
    except (ValueError, KeyError):
        raise ConfigError(f"--lcs-columns: expected e.g. time=1,id=2,size=3, got {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sim", help="simulate dual-format caches on a request trace",
                              description="Replay a trace (.npz, CSV, or libCacheSim CSV) through per-node "
                                          "dual-format caches; report mean latency and outcome fractions.")
    p.add_argument("trace", help="trace file: .npz or .csv from `lbdask trace`, or a libCacheSim CSV")
    add_list_option(p, "--cache-frac", default=DEFAULT_FRACS, help="per-node cache sizes as fractions of WSS")
    add_list_option(p, "--policy", default=["lru"], help="tier eviction policies: lru, s3fifo")
    add_list_option(p, "--alpha", default=["adaptive", "0", "1"],
                    help="'adaptive' (configured gradient), 'adaptive-paper' (eq. 2 as printed), "
                         "'adaptive-per-byte', or static image fractions, e.g. adaptive 0 1 0.5")
    p.add_argument("--nodes", type=int, default=1, help="cache nodes; ids are hashed to nodes")
    p.add_argument("--window", type=int, help="requests per tuning window (default: config W scaled to the trace)")
    p.add_argument("--step", type=float, help="alpha step per window")
    p.add_argument("--tail", type=float, help="tail fraction of each tier")
    p.add_argument("--promote-after", type=_promote_after, help="latent hits before promotion (h), or auto")
    p.add_argument("--t-decode", type=float, help="decode latency, ms")
    p.add_argument("--t-fetch", type=float, help="object-store fetch latency, ms")
    p.add_argument("--config", default="cache", help="cache config name or YAML path (default configs/cache.yaml)")
    p.add_argument("--lcs-columns", help="read TRACE as libCacheSim CSV with these 1-based columns, e.g. time=2,id=5,size=4")
    p.add_argument("--plot", help="write the alpha trajectory plot (PNG) here")
    p.add_argument("--markdown", help="write the result tables (markdown) here")
    p.add_argument("--compare-static", metavar="ALPHA",
                   help="also compare adaptive with this static alpha window by window (table; "
                        "with --window-plot, the Fig. 9 plot)")
    p.add_argument("--window-plot", help="write the per-window gain plot (PNG) here")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of tables")
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.sim.report import plot_alpha, plot_window_gain  # numba, matplotlib: not at CLI start-up
    from lbdask.sim.sweep import run_sweep, sweep_settings

    settings = sweep_settings(args.config, step=args.step, t_decode_ms=args.t_decode, t_fetch_ms=args.t_fetch,
                              tail=args.tail, promote_after=args.promote_after)
    policies = list_values(args.policy, str, "--policy", "a policy name")
    alphas = _alphas(args.alpha)
    fracs = list_values(args.cache_frac, float, "--cache-frac", "fractions of the working set")
    static = None
    if args.compare_static is not None:
        static = _alphas([args.compare_static])[0][0]
        if static is None:
            raise ConfigError("--compare-static: expected a static alpha (a number)")

    def on_trace(prep) -> None:
        print(f"trace: {prep.requests:,} requests, {prep.sizes.shape[1]:,} objects, WSS {prep.wss / 1e9:.1f} GB",
              file=sys.stderr)

    def on_result(r) -> None:
        print(f"  {r.policy:6s} alpha={r.alpha:8s} cache={100 * r.cache_frac:g}%: {r.mean_latency_ms:.2f} ms "
              f"({r.seconds:.1f} s)", file=sys.stderr)
        if args.json:
            print(json.dumps(r.row()), flush=True)

    sweep = run_sweep(args.trace, settings, fracs, policies, alphas, nodes=args.nodes, window=args.window,
                      lcs_columns=_lcs_columns(args.lcs_columns), compare_static=static,
                      on_trace=on_trace, on_result=on_result)
    tables = sweep.tables()
    if not args.json:
        print(tables)
    if args.markdown:
        Path(args.markdown).write_text(tables)
    if args.plot:
        plot_alpha(sweep.results, args.plot)
    if sweep.compare is not None and args.window_plot:
        tuner = settings.tuner
        plot_window_gain(sweep.results, sweep.compare, sweep.compare_window, tuner.t_decode_ms, tuner.t_fetch_ms,
                         args.window_plot)
    return 0
