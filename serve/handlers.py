"""Worker RPC handlers of the serving runtime: the client calls the owner worker directly.

Registered on `worker.handlers` (the same mechanism Dask's own worker-to-worker calls use),
so a read is one message to the owner and one reply, with no scheduler in between and no
task or actor bookkeeping (docs/serving.md compares it with a Dask actor call).
"""
from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import ServeRuntime

HANDLERS = ("lbdask_read", "lbdask_decode", "lbdask_depth", "lbdask_stats", "lbdask_prewarm")


def install(worker: Any, runtime: ServeRuntime) -> None:
    """Register the handlers of `runtime` on `worker` (replacing an earlier runtime's)."""

    async def lbdask_read(dest: str, image_id: str, storage_options: dict | None = None) -> bytes:
        return await runtime.read(dest, image_id, storage_options)

    async def lbdask_prewarm(dest: str, image_ids: list[str], storage_options: dict | None = None) -> int:
        return await runtime.prewarm(dest, image_ids, storage_options)

    async def lbdask_decode(payload: bytes) -> bytes:
        runtime.counts["spilled_in"] += 1
        return await runtime.decode_local(pickle.loads(payload))

    def lbdask_depth() -> int:
        return runtime.depth

    def lbdask_stats() -> dict[str, Any]:
        return runtime.stats()

    worker.handlers.update(lbdask_read=lbdask_read, lbdask_decode=lbdask_decode, lbdask_depth=lbdask_depth,
                           lbdask_stats=lbdask_stats, lbdask_prewarm=lbdask_prewarm)


def remove(worker: Any) -> None:
    """Unregister the handlers: calls after this fail as unknown operations."""
    for name in HANDLERS:
        worker.handlers.pop(name, None)
