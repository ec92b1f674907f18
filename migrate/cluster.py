"""The Dask cluster a migration runs on: an existing scheduler, or a local one sized to the machine.

A local cluster gets one worker process per GPU-less machine (or per CUDA device) with
the machine's cores as threads, so one resident model per process is fed by several
PNG-decoding threads; CUDA workers advertise the GPU resource that encode tasks require.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from lbdask.errors import StoreError
from lbdask.models.cpu_memory import malloc_environ

from .settings import ClusterSettings


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return 0


def local_cluster(settings: ClusterSettings, n_workers: int | None = None) -> LocalCluster:
    """A LocalCluster sized to this machine (overridable in configs/cluster.yaml or `--workers`)."""
    gpus = _cuda_devices()
    cores = os.cpu_count() or 1
    workers = n_workers or settings.n_workers or 1
    threads = settings.threads_per_worker or max(1, cores // workers)
    resources = {settings.gpu_resource: 1} if gpus else None
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(threads, cpu_model=not gpus)}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            memory_limit=settings.memory_limit,
            dashboard_address=settings.dashboard_address,
            resources=resources,
        )


def worker_environ(threads: int, cpu_model: bool) -> dict[str, int | str]:
    """Environment of local worker processes: BLAS/OpenMP threads = worker threads, and for a
    model on the CPU the malloc settings of configs/cpu_memory.yaml from process start.

    Dask's default sets OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_; the latter alone turns
    off glibc's adaptive mmap threshold, so every large tensor is a fresh, page-faulting mmap:
    measured here, TAEF2 on CPU ran 2x slower in such a worker (docs/benchmarks.md).
    """
    environ: dict[str, int | str] = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                     "OPENBLAS_NUM_THREADS": threads}
    return {**environ, **malloc_environ()} if cpu_model else environ


@contextlib.contextmanager
def connect(scheduler: str | None, settings: ClusterSettings, n_workers: int | None = None) -> Iterator[Client]:
    """A client on `scheduler`, or on a local cluster that is closed again on exit."""
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise StoreError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    with local_cluster(settings, n_workers) as cluster, Client(cluster) as client:
        yield client


def encode_resources(client: Client, resource: str) -> dict[str, float] | None:
    """Restrict encode tasks to GPU workers when the cluster has any; None on CPU-only clusters."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {resource: 1} if any(w.get("resources", {}).get(resource) for w in workers) else None


def dashboard_link(client: Client) -> str | None:
    """The dashboard URL, when the scheduler serves one."""
    try:
        return client.dashboard_link
    except (KeyError, AttributeError):  # no dashboard configured
        return None
