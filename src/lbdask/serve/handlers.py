"""Worker RPC handlers of serving: the client calls the owner worker directly.

Registered on `worker.handlers` (the same mechanism Dask's own worker-to-worker calls use),
so a read is one message to the owner and one reply, with no scheduler in between and no
task or actor bookkeeping (docs/serving.md compares it with a Dask actor call).

A user error (`lbdask.errors.LbdaskError`: unknown or failed id, checksum mismatch of one id,
unreachable archive) is logged here once, in one WARNING line, and sent back as distributed's
own error reply, which the caller's `rpc` raises as that exception: raised out of the handler,
distributed would log it at ERROR with a traceback. Anything else is a bug and keeps both.
"""
from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from distributed.core import error_message

from lbdask.errors import LbdaskError

if TYPE_CHECKING:
    from lbdask.serve.worker import ServingWorker

HANDLERS = ("lbdask_read", "lbdask_decode", "lbdask_depth", "lbdask_stats", "lbdask_prewarm")

logger = logging.getLogger(__name__)


def user_errors_replied(handler: Callable[..., Awaitable[Any]], log: bool = True) -> Callable[..., Awaitable[Any]]:
    """Wrap an async handler: an LbdaskError becomes an error reply, and one WARNING line unless
    `log` is False (a spilled decode: the owner whose read it serves logs it)."""

    @functools.wraps(handler)
    async def call(**kwargs: Any) -> Any:
        try:
            return await handler(**kwargs)
        except LbdaskError as exc:
            if log:
                subject = f"{handler.__name__} {kwargs['image_id']!r}" if "image_id" in kwargs else handler.__name__
                logger.warning("%s: %s: %s", subject, type(exc).__name__, exc)
            return error_message(exc, status="uncaught-error")

    return call


def _one_line_missing_handler(record: logging.LogRecord) -> bool:
    """distributed's "No handler lbdask_... found" (a client of a worker whose serving is gone)
    as one line: the client raises ServingNotInstalledError, the KeyError traceback says nothing."""
    if record.msg == "No handler %s found in %s" and str(record.args[0]).startswith("lbdask_"):
        record.exc_info = record.exc_text = None
    return True


def install(worker: Any, serving: ServingWorker) -> None:
    """Register the handlers of `serving` on `worker` (replacing earlier ones)."""

    @user_errors_replied
    async def lbdask_read(dest: str, image_id: str, storage_options: dict | None = None) -> bytes:
        return await serving.read(dest, image_id, storage_options)

    @user_errors_replied
    async def lbdask_prewarm(dest: str, image_ids: list[str], storage_options: dict | None = None) -> int:
        return await serving.prewarm(dest, image_ids, storage_options)

    @functools.partial(user_errors_replied, log=False)
    async def lbdask_decode(payload: bytes) -> bytes:
        serving.counts["spilled_in"] += 1
        return await serving.decode_local(pickle.loads(payload))

    def lbdask_depth() -> int:
        return serving.depth

    def lbdask_stats() -> dict[str, Any]:
        return serving.stats()

    core = logging.getLogger("distributed.core")
    if _one_line_missing_handler not in core.filters:
        core.addFilter(_one_line_missing_handler)
    worker.handlers.update(lbdask_read=lbdask_read, lbdask_decode=lbdask_decode, lbdask_depth=lbdask_depth,
                           lbdask_stats=lbdask_stats, lbdask_prewarm=lbdask_prewarm)


def remove(worker: Any) -> None:
    """Unregister the handlers: calls after this fail as unknown operations (a bare `None`
    reply, which the client reports as ServingNotInstalledError)."""
    for name in HANDLERS:
        worker.handlers.pop(name, None)
