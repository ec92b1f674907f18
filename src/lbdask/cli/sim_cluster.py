"""`lbdask sim-cluster TRACE`: the serving router and caches over simulated GPU nodes."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lbdask.errors import ConfigError
from lbdask.sim.cluster_config import ClusterConfig
from lbdask.sim.dist import parse_dist

if TYPE_CHECKING:
    from lbdask.sim.cluster import ClusterResult
    from lbdask.sim.workload import Workload

D = ClusterConfig()


def _flags(values: list[str], what: str) -> list[bool]:
    table = {"on": True, "off": False}
    try:
        return [table[v] for item in values for v in item.split(",") if v]
    except KeyError:
        raise ConfigError(f"{what}: expected on and/or off, got {' '.join(values)}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sim-cluster", help="simulate the serving cluster (router, caches, GPUs) on a trace",
                              description="Discrete-event simulation of the serving path: the real hash ring, "
                                          "coalescer, spillover rule and per-node dual-format caches over "
                                          "simulated GPUs and object-store fetches. Several values for "
                                          "--nodes/--alpha/--spillover/--coalesce run every combination.")
    p.add_argument("trace", help="trace file (.npz or .csv from `lbdask trace generate`)")
    p.add_argument("--nodes", nargs="+", type=int, default=[D.nodes], help="GPU nodes (several: a scaling sweep)")
    p.add_argument("--gpus-per-node", type=int, default=D.gpus_per_node)
    p.add_argument("--decode-ms", default=str(D.decode_ms), help="decode time: const:X, uniform:LO:HI, lognormal:MEAN:SIGMA")
    p.add_argument("--fetch-ms", default=str(D.fetch_ms), help="object-store fetch of a latent")
    p.add_argument("--png-fetch-ms", default=str(D.png_fetch_ms), help="object-store fetch of a PNG (ImgStore)")
    p.add_argument("--network-ms", default=str(D.network_ms), help="response transfer to the router")
    p.add_argument("--ship-ms", type=float, default=D.ship_ms, help="latent shipped from the owner to a spillover node")
    p.add_argument("--theta", type=float, default=D.theta, help="spillover threshold: owner queue depth")
    p.add_argument("--spillover", nargs="+", default=["on"], help="on, off, or both")
    p.add_argument("--coalesce", nargs="+", default=["on"], help="on, off, or both")
    p.add_argument("--alpha", nargs="+", default=["adaptive"],
                   help="adaptive, adaptive-per-byte, adaptive-paper, decode-all, imgstore, or static image "
                        "fractions (0 = LB-LatentCache, 1 = LB-ImgCache)")
    p.add_argument("--cache-frac", type=float, default=D.cache_frac, help="per-node cache as a fraction of the WSS")
    p.add_argument("--cache-scope", choices=("node", "cluster"), default="node",
                   help="cluster: --cache-frac is the whole cluster's budget, split over the nodes")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--speedup", type=float, help="divide trace time by this factor")
    rate.add_argument("--rate", type=float, help="offered requests per second over the timed part")
    rate.add_argument("--rate-per-node", type=float, help="offered requests per second per node")
    p.add_argument("--warmup", type=float, default=D.warmup, help="leading fraction of the trace that only warms caches")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--config", default="cache", help="cache config name or YAML path (default configs/cache.yaml)")
    p.add_argument("--markdown", help="write the result tables (markdown) here")
    p.add_argument("--plot-cdf", help="write the latency CDFs (PNG) here")
    p.add_argument("--plot-spillover", help="write the with/without spillover bars (PNG) here")
    p.add_argument("--plot-scaling", help="write latency and load against the node count (PNG) here")
    p.add_argument("--json", action="store_true", help="print one JSON object per configuration instead of tables")
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.sim.cluster import Workload, simulate_cluster
    from lbdask.sim.settings import load_sim_settings  # caches, tuner, numba: not at CLI start-up
    from lbdask.sim.trace import load_trace

    settings = load_sim_settings(args.config)
    base = _base_config(args)
    configs = _configs(args, base)
    work = Workload.from_trace(load_trace(args.trace, latent_ratio=settings.trace.latent_ratio))
    print(f"trace: {work.requests:,} requests, {work.sizes.shape[1]:,} objects, WSS {work.wss / 1e9:.1f} GB; "
          f"timed: the last {1 - base.warmup:.0%}", file=sys.stderr)
    results = []
    for c in configs:
        r = simulate_cluster(work, c, _speedup(args, work, c), settings)
        results.append(r)
        _say(r, args.json)
    tables = _tables(results)
    if not args.json:
        print(tables)
    _write_outputs(args, results, tables)
    return 0


def _base_config(args: argparse.Namespace) -> ClusterConfig:
    """The settings every configuration of the sweep shares, from the flags (rates checked)."""
    base = replace(D, gpus_per_node=args.gpus_per_node, decode_ms=parse_dist(args.decode_ms, "--decode-ms"),
                   fetch_ms=parse_dist(args.fetch_ms, "--fetch-ms"),
                   png_fetch_ms=parse_dist(args.png_fetch_ms, "--png-fetch-ms"),
                   network_ms=parse_dist(args.network_ms, "--network-ms"), ship_ms=args.ship_ms, theta=args.theta,
                   warmup=args.warmup, seed=args.seed)
    for flag in ("speedup", "rate", "rate_per_node"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    return base


def _configs(args: argparse.Namespace, base: ClusterConfig) -> list[ClusterConfig]:
    """Every combination of --nodes, --alpha, --spillover and --coalesce, validated."""
    configs = [replace(base, nodes=n, alpha=a, spillover=s, coalesce=c,
                       cache_frac=args.cache_frac / (n if args.cache_scope == "cluster" else 1))
               for n in args.nodes for a in [v for x in args.alpha for v in x.split(",") if v]
               for s in _flags(args.spillover, "--spillover") for c in _flags(args.coalesce, "--coalesce")]
    for c in configs:
        c.validate()
    return configs


def _speedup(args: argparse.Namespace, work: Workload, c: ClusterConfig) -> float:
    """Trace time is divided by this: --speedup, or what gives --rate (--rate-per-node) requests per second."""
    if args.rate is not None or args.rate_per_node is not None:
        return work.speedup_for_rate(c.warmup, args.rate or args.rate_per_node * c.nodes)
    return args.speedup or 1.0


def _say(r: ClusterResult, as_json: bool) -> None:
    """One progress line per configuration on stderr; with --json its row on stdout."""
    c, row = r.config, r.row()
    print(f"  nodes={c.nodes} alpha={c.alpha} spillover={'on' if c.spillover else 'off'} "
          f"coalesce={'on' if c.coalesce else 'off'}: mean {row['mean_ms']:.1f} ms, P99 {row['p99_ms']:.1f} ms "
          f"({row['arrival_rate_per_s']:,.0f} req/s offered, {r.wall_s:.1f} s, "
          f"{row['requests_per_s']:,.0f} simulated req/s)", file=sys.stderr)
    if as_json:
        print(json.dumps(row), flush=True)


def _tables(results: list[ClusterResult]) -> str:
    """The markdown tables: latency, and spillover or scaling where the sweep compares them."""
    from lbdask.sim.cluster_report import latency_table, node_table, scaling_table, spillover_table

    tables = f"## Read latency\n\n{latency_table(results)}\n"
    if any(not r.config.spillover for r in results) and any(r.config.spillover for r in results):
        tables += f"\n## Spillover\n\n{spillover_table(results)}\n"
    if len({r.config.nodes for r in results}) > 1:
        tables += f"\n## Scaling\n\n{scaling_table(results)}\n"
    else:
        tables += f"\n## Per node ({results[0].config.alpha}, first run)\n\n{node_table(results[0])}\n"
    return tables


def _write_outputs(args: argparse.Namespace, results: list[ClusterResult], tables: str) -> None:
    """--markdown, --plot-cdf, --plot-spillover, --plot-scaling."""
    from lbdask.sim.cluster_report import plot_cdf, plot_scaling, plot_spillover

    if args.markdown:
        Path(args.markdown).write_text(tables)
    if args.plot_cdf:
        plot_cdf(results, args.plot_cdf)
    for path, plot in ((args.plot_spillover, plot_spillover), (args.plot_scaling, plot_scaling)):
        if path:
            plot([r.row() for r in results], path)
