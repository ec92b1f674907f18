"""The public Python entry point `lbdask.open(DEST)`: in-process reads (the core's
`lbdask.reader`) or reads through a serving cluster (the serve job's client). It sits beside
the CLI, above the core and the jobs, so the core never imports a job (docs/architecture.md).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lbdask.archive import Archive
from lbdask.reader import ArchiveReader

if TYPE_CHECKING:
    from lbdask.serve.client import ServingClient


def open(  # noqa: A001 - `lbdask.open` is the public name in the design contract
    dest: str,
    storage_options: dict[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    precision: str | None = None,
    runtime: str | None = None,
) -> ArchiveReader | ServingClient:
    """Open an archive for reading images back: in this process, or through the serving
    cluster at `scheduler` (a `serve.client.ServingClient` with the same `read`; the
    cluster's workers decode with their own model, so `weights`, `device`, `precision` and
    `runtime` apply to in-process reads)."""
    if scheduler is not None:
        from lbdask.serve.client import ServingClient  # dask client code only for cluster reads

        return ServingClient(dest, scheduler, storage_options=storage_options)
    return ArchiveReader(Archive.open(dest, mode="r", storage_options=storage_options), weights=weights, device=device,
                         precision=precision, runtime=runtime)
