"""Typed cluster settings, read from `configs/cluster.yaml` (what a job does with each image,
`configs/jobs.yaml`, is `lbdask.representation.settings`).

Validated when read, so a bad value fails before any cluster is started.
"""
from __future__ import annotations

from dataclasses import dataclass

from lbdask.config import load_config


@dataclass(frozen=True)
class ClusterSettings:
    """How the embedded local cluster is sized (see configs/cluster.yaml)."""

    n_workers: int | None = None          # None: one per CUDA device, else one per 2 CPU cores
    threads_per_worker: int | None = None  # None: CPU cores / n_workers
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"
    gpu_resource: str = "GPU"

    def validate(self) -> None:
        """Reject sizes Dask would hang on, silently change or fail on only once the cluster starts."""
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, or null for one per CUDA device (else one per "
                             f"2 CPU cores), not {self.n_workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be at least 1, or null for CPU cores / n_workers, "
                             f"not {self.threads_per_worker}")
        if self.memory_limit != "auto":
            parse_size(self.memory_limit, "memory_limit", "'auto' or ", " (0: no limit)", minimum=0)
        if not self.gpu_resource:
            raise ValueError("gpu_resource must not be empty")


def parse_size(text: object, name: str, choices: str = "", note: str = "", minimum: int = 1) -> int:
    """Bytes of a Dask size such as '4GiB' or '500MB'; a one-line error naming `name` otherwise."""
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except (ValueError, TypeError):
        size = -1
    if size < minimum:
        raise ValueError(f"{name} must be {choices}a size such as '4GiB' or '500MB'{note}, not {text!r}")
    return size


@dataclass(frozen=True)
class _ClusterFile:
    cluster: ClusterSettings


def load_cluster_settings() -> ClusterSettings:
    """The validated `cluster:` section of configs/cluster.yaml."""
    return load_config("cluster", _ClusterFile).cluster
