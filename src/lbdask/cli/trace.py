"""`lbdask trace`: generate a calibrated synthetic request trace, or measure a trace's statistics."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("trace", help="generate or measure request traces",
                              description="Generate a synthetic trace calibrated to the production "
                                          "statistics (design-notes.md), or measure a trace.")
    sub = p.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    g = sub.add_parser("generate", help="write a synthetic trace (.npz or .csv)")
    g.add_argument("out", help="output file, .npz (fast) or .csv")
    g.add_argument("--requests", type=int, default=1_000_000, help="number of requests (about)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--config", default="cache", help="config name or YAML path holding the `trace` section")
    g.add_argument("--stats", action="store_true", help="also measure and print the trace's statistics")
    s = sub.add_parser("stats", help="print the design-notes statistics of a trace as JSON")
    s.add_argument("trace", help="a .npz or .csv trace")
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.sim.settings import load_sim_settings  # imports numba (the tuner)
    from lbdask.sim.trace import generate_trace, load_trace, save_trace, trace_statistics

    if args.trace_command == "generate":
        cfg = load_sim_settings(args.config).trace
        trace = generate_trace(args.requests, cfg, seed=args.seed)
        save_trace(trace, args.out)
        print(f"wrote {len(trace):,} requests to {args.out}", file=sys.stderr)
        if args.stats:
            print(json.dumps(trace_statistics(trace), indent=2))
        return 0
    print(json.dumps(trace_statistics(load_trace(args.trace)), indent=2))
    return 0
