"""Shared pieces of the real-process migration tests: Dask subprocesses, tiny PNGs, the CLI call.

Used by the tests of tests/system/ and others (`from tests.support.cluster import ...`).
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
#: the shared data beside the checkout (LBDASK_SHARED overrides it); conftest's fixtures use it too
SHARED = Path(os.environ.get("LBDASK_SHARED", REPO.parent / "shared"))
TAEF2_WEIGHTS = SHARED / "models" / "taef2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {port}")


class DaskProcesses:
    """A real scheduler (dashboard optional) plus restartable single-threaded workers, on loopback."""

    def __init__(self, env: dict[str, str], dashboard_port: int | None = None) -> None:
        self.env = env
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        dashboard = ["--dashboard-address", f"127.0.0.1:{dashboard_port}"] if dashboard_port else ["--no-dashboard"]
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             *dashboard], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.scheduler)
        if dashboard_port:
            wait_port(dashboard_port, self.scheduler)
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, resources: str | None = None, dashboard_port: int | None = None,
                     log: Path | None = None) -> subprocess.Popen:
        """One worker process; `resources` is dask's `--resources` text, e.g. "GPU=1"; with
        `dashboard_port` its HTTP server (/metrics) listens there; with `log` its stderr goes there."""
        extra = ["--resources", resources] if resources else []
        extra += ["--dashboard-address", f"127.0.0.1:{dashboard_port}"] if dashboard_port else ["--no-dashboard"]
        stderr = log.open("ab") if log else subprocess.DEVNULL
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers", "1", "--nthreads", "2",
             "--no-nanny", "--host", "127.0.0.1", *extra],
            env=self.env, stdout=subprocess.DEVNULL, stderr=stderr)
        if log:
            stderr.close()   # the worker holds its own copy
        self.workers.append(worker)
        return worker

    def wait_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def one_worker_cluster(env: dict[str, str]) -> Iterator[DaskProcesses]:
    """A scheduler and one worker with environment `env`, closed on exit (a module fixture's
    cluster: a test that kills the worker starts a replacement with `start_worker`)."""
    procs = DaskProcesses(env)
    try:
        procs.start_worker()
        procs.wait_workers(1)
        yield procs
    finally:
        procs.close()


class LogsSince:
    """What processes write to their log files (`start_worker(log=...)`) from now on."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.start = paths, [p.stat().st_size for p in paths]

    def new(self) -> str:
        return "".join(p.read_bytes()[n:].decode(errors="replace") for p, n in zip(self.paths, self.start))


def subprocess_env() -> dict[str, str]:
    """The environment of every subprocess: this checkout's code and tests importable first
    (workers unpickle `lbdask.*` and `tests.support.*`)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO),
                                                                      os.environ.get("PYTHONPATH")]))}


def png_bytes(pixels: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **save)
    return buf.getvalue()


def smooth(seed: int, size: int = 64) -> np.ndarray:
    """A smooth colour gradient the VAE reproduces well (PSNR far above 20 dB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    a, b, c = rng.uniform(0.2, 0.8, 3)
    img = np.stack([a + 0.3 * x, b + 0.3 * y, c + 0.2 * (x - y)], axis=2)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def grainy(seed: int, size: int = 64) -> np.ndarray:
    """A gradient with photographic grain: deflate cannot shrink the grain, so (unlike a flat
    gradient) its latent is smaller than its PNG, and the VAE still keeps it above 20 dB."""
    noise = np.random.default_rng(seed).normal(0, 4, (size, size, 3))
    return np.clip(smooth(seed, size) + noise, 0, 255).astype(np.uint8)


def write_grainy_source(root: Path, n: int) -> set[str]:
    """`n` grainy 64x64 RGB PNGs (all become latents) in a new folder; returns their ids."""
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"img{i:03d}.png").write_bytes(png_bytes(grainy(100 + i)))
    return {f"img{i:03d}.png" for i in range(n)}


#: `gen_cluster(clean_kwargs=...)` of a test that runs a job's driver in this process: zarr's I/O loop,
#: tqdm's monitor and the thread pools of zarr and fsspec are process-wide threads started at first
#: use and kept, not leaks of the test.
IN_PROCESS_JOB = {"threads": False}


def migrate_argv(src: str, dest: str, scheduler: str | None, *extra: str) -> list[str]:
    """`lbdask migrate`'s arguments with the TAEF2 weights; no `scheduler` = the embedded local cluster."""
    target = ["--scheduler", scheduler] if scheduler else []
    return ["migrate", src, dest, *target, "--no-progress", "--weights", str(TAEF2_WEIGHTS), "--min-psnr", "20",
            "--max-pixels", "10000", *extra]


def migrate_cmd(src: str, dest: str, scheduler: str | None, *extra: str) -> list[str]:
    """`lbdask migrate` as a command line (`migrate_argv`)."""
    return [sys.executable, "-m", "lbdask", *migrate_argv(src, dest, scheduler, *extra)]
