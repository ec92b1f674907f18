"""`lbdask serve DEST`: serve an archive from worker-resident caches on a Dask cluster.

With `--scheduler` serving goes onto an existing cluster's workers (and any that join
later); without it an embedded local cluster is started. Runs until Ctrl-C or SIGTERM,
then removes serving from every worker again.
"""
from __future__ import annotations

import argparse
import signal
import threading

from lbdask.cli.inference_options import add_inference_options
from lbdask.errors import ConfigError
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve an archive's images from worker-resident caches on Dask")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDR", help="install on this running cluster's workers")
    where.add_argument("--workers", type=int, metavar="N", help="workers of the embedded local cluster")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="model to decode with (default: the archive's)")
    p.add_argument("--weights", metavar="DIR", help="weights folder of the model")
    p.add_argument("--cache-bytes", type=int, metavar="N", help="cache budget per worker (bytes)")
    p.add_argument("--config", metavar="YAML", help="serving settings (default configs/serve.yaml)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    p.add_argument("--http", metavar="HOST:PORT", help="also serve GET /images/{id} over HTTP here (port 0: a free port)")
    p.add_argument("--prewarm", metavar="N|FILE",
                   help="load the N hottest ids (access statistics) or FILE's ids (one a line) into the caches first")
    add_inference_options(p)  # serve.yaml worker.precision / worker.runtime
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.cluster.connect import connect
    from lbdask.cluster.settings import load_cluster_settings
    from lbdask.models.resident import model_configs
    from lbdask.serve.deploy import dashboard_url, install, uninstall, warm
    from lbdask.serve.gateway import GatewayThread, parse_bind
    from lbdask.serve.prewarm import prewarm, prewarm_ids
    from lbdask.serve.settings import load_serve_settings

    settings = load_serve_settings(args.config or "serve")
    configs = model_configs()  # validated here; the workers get these, not their own files
    if args.cache_bytes is not None:
        if args.cache_bytes < 0:
            raise ConfigError(f"--cache-bytes must be >= 0, got {args.cache_bytes}")
        settings.worker.cache_bytes = args.cache_bytes
    if args.precision is not None:
        settings.worker.precision = args.precision
    if args.runtime is not None:
        settings.worker.runtime = args.runtime
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.http:
        parse_bind(args.http)
    options = parse_storage_options(args.storage_options)
    warm_ids = prewarm_ids(args.dest, args.prewarm, options) if args.prewarm else None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with connect(args.scheduler, load_cluster_settings(), args.workers) as client:
            install(client, args.dest, settings, args.model, args.weights, options, configs)
            warm(client, args.dest, options)
            if warm_ids is not None:
                print(prewarm(args.dest, client.scheduler.address, warm_ids, settings.client, options), flush=True)
            n = len(client.scheduler_info(n_workers=-1)["workers"])
            print(f"serving {args.dest} on {client.scheduler.address} ({n} workers)", flush=True)
            print(f"dashboard: {dashboard_url(client) or 'none (the scheduler runs without one)'}", flush=True)
            gateway = GatewayThread(args.dest, client.scheduler.address, args.http, settings, options) if args.http else None
            try:
                if gateway is not None:
                    print(f"http: {gateway.start()}", flush=True)
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                if gateway is not None:
                    gateway.stop()
                uninstall(client)
            print("serving removed", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
