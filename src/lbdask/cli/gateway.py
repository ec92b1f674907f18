"""`lbdask gateway DEST --scheduler ADDR --http HOST:PORT`: only the HTTP gateway (serve.gateway),
in front of a cluster that `lbdask serve` already serves; start several behind one load balancer."""
from __future__ import annotations

import argparse

from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("gateway", help="serve an archive's images over HTTP from a running serving cluster")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path (as given to lbdask serve)")
    p.add_argument("--scheduler", metavar="ADDR", required=True, help="the serving cluster's scheduler")
    p.add_argument("--http", metavar="HOST:PORT", required=True, help="listen here (port 0: a free port)")
    p.add_argument("--config", metavar="YAML", help="serving settings (default configs/serve.yaml)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.serve.gateway import parse_bind, run_until_signalled
    from lbdask.serve.settings import load_serve_settings

    settings = load_serve_settings(args.config or "serve")
    parse_bind(args.http)  # a bad address is one line before anything connects
    run_until_signalled(args.dest, args.scheduler, args.http, settings, parse_storage_options(args.storage_options),
                        lambda url: print(f"http: {url}", flush=True))
    return 0
