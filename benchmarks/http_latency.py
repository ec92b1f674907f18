"""Image-hit latency through the HTTP gateway against the direct client, in the same run.

    python benchmarks/http_latency.py [--reads 300] [--workers 1] [--workdir /tmp/wd]

Starts `lbdask serve LATENT --workers N --http 127.0.0.1:0` as a subprocess (alpha = 1, so a
read id stays in the image tier) on an archive of the corpus images resized to `--size` px
(migrated with `lbdask migrate`, benchmarks/serve_latency.py builds it), reads one id once to
fill the cache, then alternates sequential image hits: `ServingClient.read`, HTTP GET on one
keep-alive connection (what a web application's HTTP client or a browser does), HTTP GET
on a new connection each time, and a 304 revalidation (If-None-Match). Prints a markdown
table (mean, P50/P95/P99 in ms) with machine and date; results go to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from serve_latency import REPO, TAEF2, build_archives


def serve_config(path: Path) -> Path:
    """configs/serve.yaml with a static alpha = 1 and no tuning: every decoded id stays an image hit."""
    cfg = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    cfg["cache"]["adaptive"] = False
    cfg["tuner"].update(alpha=1.0, alpha_min=0.0, alpha_max=1.0)
    cfg["worker"]["cache_bytes"] = 64 * 2**20
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_serving(dest: str, workers: int, config: Path, log: Path) -> tuple[subprocess.Popen, str, int]:
    """`lbdask serve --http` as a subprocess; its scheduler address and HTTP port."""
    proc = subprocess.Popen([sys.executable, "-m", "lbdask", "serve", dest, "--workers", str(workers), "--model",
                             "taef2", "--weights", str(TAEF2), "--config", str(config), "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    address = port = None
    while port is None:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"lbdask serve ended: {log.read_text()[-2000:]}")
        if m := re.match(r"serving .* on (tcp://\S+)", line):
            address = m.group(1)
        if m := re.match(r"http: http://127\.0\.0\.1:(\d+)", line):
            port = int(m.group(1))
    return proc, address, port


def ms_row(name: str, lat: list[float]) -> str:
    """One table row: mean, P50, P95, P99 in ms, one decimal (hits take a few ms)."""
    a = np.asarray(lat)
    return f"| {name} | {a.mean():.1f} | " + " | ".join(f"{p:.1f}" for p in np.percentile(a, [50, 95, 99])) + " |"


def get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None) -> tuple[int, bytes, str]:
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read(), resp.getheader("ETag") or ""


def measure(dest: str, address: str, port: int, image_id: str, reads: int) -> tuple[list[str], int]:
    """Alternating sequential reads of one image hit by each path; table rows, PNG size."""
    from lbdask.serve.client import ServingClient

    path = "/images/" + image_id
    with ServingClient(dest, address) as box:
        png = box.read(image_id)   # a miss: decoded once, then held in the image tier (alpha = 1)
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, body, etag = get(kept, path)
        assert status == 200 and body == png, "the gateway must return the client's bytes"

        def fresh() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            assert get(conn, path)[0] == 200
            conn.close()

        paths: dict[str, Callable[[], object]] = {
            "`ServingClient.read` (direct, worker RPC)": lambda: box.read(image_id),
            "HTTP GET, keep-alive connection": lambda: get(kept, path),
            "HTTP GET, new connection per request": fresh,
            "HTTP GET with If-None-Match (304, no body)": lambda: get(kept, path, {"If-None-Match": etag}),
        }
        lat: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(reads):
            for name, read in paths.items():
                t0 = time.perf_counter()
                read()
                lat[name].append((time.perf_counter() - t0) * 1000)
        kept.close()
    return [ms_row(name, ms) for name, ms in lat.items()], len(png)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=300, help="timed reads per path")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workdir", help="keep the archive here and reuse it next time (default: a temp folder)")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(args.workdir or d)
        tmp.mkdir(parents=True, exist_ok=True)
        latent, _, sources = build_archives(tmp, args.size, crops=0)
        start = os.getloadavg()[0]
        proc, address, port = start_serving(latent, args.workers, serve_config(tmp / "serve.yaml"), tmp / "serve.log")
        try:
            rows, size = measure(latent, address, port, sorted(sources)[0], args.reads)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print(f"Image hits of one {size / 1e3:.0f} KB PNG, {args.reads} sequential reads per path, paths alternating, "
          f"{args.workers} worker(s), gateway inside `lbdask serve --http`:\n")
    print("| path | mean ms | P50 | P95 | P99 |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
