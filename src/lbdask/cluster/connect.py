"""The Dask cluster a migration runs on: an existing scheduler, or a local one sized to the machine.

A local cluster gets one worker process per CUDA device (each sees only its own device),
or on a machine without one, one per 2 CPU cores (configs/cluster.yaml `n_workers: null`);
each worker's threads feed its one resident model with decoded PNGs. CUDA workers
advertise the GPU resource that encode tasks require. Local workers do not log the
`Compute Failed ... Traceback` of a failed task: the driver re-raises the error and the
CLI prints it as one line.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from lbdask.cluster.settings import ClusterSettings
from lbdask.errors import StoreError
from lbdask.models.cpu_memory import malloc_environ


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return 0


def default_workers(gpus: int, cores: int) -> int:
    """`n_workers: null`: one worker per CUDA device, else one per 2 CPU cores (at least one)."""
    return gpus if gpus else max(1, cores // 2)


def local_cluster(settings: ClusterSettings, n_workers: int | None = None) -> LocalCluster:
    """A LocalCluster sized to this machine (overridable in configs/cluster.yaml or `--workers`).

    With CUDA devices, worker i sees device i mod devices only (CUDA_VISIBLE_DEVICES), so
    each loads its resident model on its own GPU. Dask's nanny sets the workers' environment
    (`worker_environ`) in this process's `os.environ` before it spawns them; it is put back
    afterwards, so the driver's later subprocesses keep the user's environment.
    """
    gpus = _cuda_devices()
    cores = os.cpu_count() or 1
    workers = n_workers or settings.n_workers or default_workers(gpus, cores)
    threads = settings.threads_per_worker or max(1, cores // workers)
    resources = {settings.gpu_resource: 1} if gpus else None
    environ = dict(os.environ)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(threads, cpu_model=not gpus)}):
        cluster = LocalCluster(
            n_workers=0,
            threads_per_worker=threads,
            processes=True,
            memory_limit=settings.memory_limit,
            dashboard_address=settings.dashboard_address,
            resources=resources,
        )
        try:
            for i in range(workers):
                env = {"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus else {}
                spec = cluster.new_spec
                cluster.worker_spec[i] = {**spec, "options": {**spec["options"], "env": env}}
            cluster.sync(cluster._correct_state)
        except BaseException:
            cluster.close()
            raise
        finally:
            os.environ.clear()
            os.environ.update(environ)
    return cluster


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
        client.register_plugin(QuietTaskErrors())
        yield client


def _not_compute_failed(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Compute Failed")


class QuietTaskErrors(WorkerPlugin):
    """Drops the worker's `Compute Failed ... Traceback` log record of a failed task.

    A local worker shares the user's terminal; the driver re-raises the task's error and
    the CLI prints it as one line (the traceback with `--debug`).
    """

    name = "lbdask-quiet-task-errors"

    def setup(self, worker) -> None:
        logging.getLogger("distributed.worker").addFilter(_not_compute_failed)


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
