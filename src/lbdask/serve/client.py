"""Reading through a serving cluster: `lbdask.open(DEST, scheduler=ADDR)`.

The client hashes each id onto a ring of the scheduler's workers and sends the read
straight to the owner worker's `lbdask_read` handler: one round trip, no scheduler on the
path. The ring follows the scheduler's worker list (re-read in the background every few
seconds); a worker that fails to answer is marked dead at once and the read is retried, a
bounded number of times, on the id's next owner (lbdask.routing.ring.live_owner). A worker without
the handler (no lbdask serving there: `lbdask serve` not running) is skipped the same way until the
next ring refresh; when no worker has it, the read is a ServingNotInstalledError.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from distributed import Client
from distributed.comm.core import CommClosedError

from lbdask.errors import ServingNotInstalledError, StoreError
from lbdask.routing.ring import HashRing, live_owner, ring_from_workers
from lbdask.serve.settings import ClientConfig, load_serve_settings

#: Ids per prewarm call to one worker: each call must finish within `client.timeout_s`.
PREWARM_CHUNK = 64


class _NoHandler(Exception):
    """The worker has no such handler: distributed answers an unknown op with a bare `None`
    (`Server.handle_comm` logs "No handler ... found" and replies with its unset result)."""


class _Router:
    """Ring + dead-worker bookkeeping + the retrying read coroutine, shared by both clients."""

    def __init__(self, client: Client, dest: str, storage_options: dict | None, config: ClientConfig) -> None:
        self.client, self.dest, self.storage_options, self.config = client, dest, storage_options, config
        self._ring = HashRing()
        self._ring_at = 0.0
        self._refreshing: asyncio.Future | None = None
        self._dead: set[str] = set()
        self._bare: set[str] = set()   # workers without the handlers, until the next refresh

    async def ring(self) -> HashRing:
        """The ring over the scheduler's workers, refreshed in the background every `ring_refresh_s`.

        Only the very first read waits for the worker list; later refreshes run beside reads,
        so the scheduler is never on the read path.
        """
        if not self._ring.members:
            await self._refresh()
        elif time.monotonic() - self._ring_at > self.config.ring_refresh_s and self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        return self._ring

    async def _refresh(self) -> None:
        try:
            workers = sorted(await self.client.scheduler.ncores())
        finally:
            self._refreshing = None
        self._ring_at = time.monotonic()
        self._bare.clear()   # a worker that just joined may have installed serving since
        if tuple(workers) != self._ring.members:
            self._ring = ring_from_workers(workers)
            self._dead &= set(workers)   # a dead worker the scheduler dropped is simply gone

    async def read(self, image_id: str) -> bytes:
        last: BaseException | None = None
        for _ in range(self.config.retries + 1):
            try:
                owner = live_owner(await self.ring(), image_id, self._dead | self._bare)
            except LookupError:
                break
            try:
                return await self._ask(owner, "lbdask_read", bytes, image_id=image_id)
            except (OSError, CommClosedError, asyncio.TimeoutError) as exc:
                self._dead.add(owner)
                last = exc
            except _NoHandler as exc:
                self._bare.add(owner)
                last = exc
        if isinstance(last, _NoHandler) or (last is None and self._bare):
            raise self._not_serving()
        reason = f"{type(last).__name__}: {last}" if last else "no serving workers"
        raise StoreError(f"reading {image_id!r} through {self.client.scheduler.address} failed "
                         f"after {self.config.retries + 1} attempt(s): {reason}")

    async def _ask(self, owner: str, op: str, expected: type, **args: Any) -> Any:
        """One handler call on `owner`; _NoHandler when it has none, StoreError for a reply that
        is not of the `expected` type (never handed on as image bytes or a count)."""
        reply = await asyncio.wait_for(
            getattr(self.client.rpc(owner), op)(dest=self.dest, storage_options=self.storage_options, **args),
            timeout=self.config.timeout_s)
        if reply is None:
            raise _NoHandler(owner)
        if not isinstance(reply, expected):
            raise StoreError(f"worker {owner} answered {op} with a {type(reply).__name__}, not {expected.__name__}")
        return reply

    def _not_serving(self) -> ServingNotInstalledError:
        address = self.client.scheduler.address
        return ServingNotInstalledError(f"no lbdask serving on {address}: start "
                                        f"`lbdask serve {self.dest} --scheduler {address}`")

    async def prewarm(self, image_ids: Sequence[str]) -> int:
        """Ask each id's owner to load it into its cache, in chunks of PREWARM_CHUNK ids per
        call; ids of an owner that fails to answer go to their next owner (bounded retries)."""
        pending = list(dict.fromkeys(image_ids))
        loaded = 0
        for _ in range(self.config.retries + 1):
            if not pending:
                break
            ring = await self.ring()
            groups: dict[str, list[str]] = {}
            try:
                for image_id in pending:
                    groups.setdefault(live_owner(ring, image_id, self._dead | self._bare), []).append(image_id)
            except LookupError:
                break
            pending = []
            counts = await asyncio.gather(*(self._prewarm_owner(o, ids, pending) for o, ids in groups.items()))
            loaded += sum(counts)
        if pending and not loaded and self._bare:
            raise self._not_serving()
        return loaded

    async def _prewarm_owner(self, owner: str, image_ids: list[str], failed: list[str]) -> int:
        loaded = 0
        for start in range(0, len(image_ids), PREWARM_CHUNK):
            chunk = image_ids[start:start + PREWARM_CHUNK]
            try:
                loaded += await self._ask(owner, "lbdask_prewarm", int, image_ids=chunk)
            except (OSError, CommClosedError, asyncio.TimeoutError, _NoHandler) as exc:
                (self._bare if isinstance(exc, _NoHandler) else self._dead).add(owner)
                failed.extend(image_ids[start:])
                break
        return loaded


class ServingClient:
    """Blocking reads through a serving cluster; bytes equal `lbdask read DEST ID`."""

    def __init__(self, dest: str, scheduler: str, storage_options: dict | None = None,
                 config: ClientConfig | None = None) -> None:
        try:
            client = Client(scheduler, timeout="20s", set_as_default=False)
        except OSError as exc:
            raise StoreError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        self.dest = dest
        self._client = client
        self._router = _Router(client, dest, storage_options, config or load_serve_settings().client)

    def read(self, image_id: str) -> bytes:
        """PNG bytes of one image; UnknownImageError (a KeyError) if the archive has no such id,
        ServingNotInstalledError if the cluster's workers run no lbdask serving."""
        return self._client.sync(self._router.read, image_id)

    def read_many(self, image_ids: Sequence[str]) -> list[bytes]:
        """PNG bytes of several images, read in parallel, in the order asked."""
        async def gather() -> list[bytes]:
            return list(await asyncio.gather(*(self._router.read(i) for i in image_ids)))
        return self._client.sync(gather)

    def prewarm(self, image_ids: Sequence[str]) -> int:
        """Load ids into their owners' caches without sending bytes back (a later read is a
        cache hit); returns how many were loaded (unknown or unreadable ids are not)."""
        return self._client.sync(self._router.prewarm, image_ids)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncServingClient:
    """The asyncio variant: `box = await AsyncServingClient.connect(...)`; `await box.read(id)`."""

    def __init__(self, client: Client, router: _Router) -> None:
        self._client, self._router = client, router

    @classmethod
    async def connect(cls, dest: str, scheduler: str, storage_options: dict | None = None,
                      config: ClientConfig | None = None) -> AsyncServingClient:
        try:
            client = await Client(scheduler, asynchronous=True, timeout="20s", set_as_default=False)
        except OSError as exc:
            raise StoreError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        return cls(client, _Router(client, dest, storage_options, config or load_serve_settings().client))

    async def read(self, image_id: str) -> bytes:
        return await self._router.read(image_id)

    async def read_many(self, image_ids: Sequence[str]) -> list[bytes]:
        return list(await asyncio.gather(*(self._router.read(i) for i in image_ids)))

    async def prewarm(self, image_ids: Sequence[str]) -> int:
        return await self._router.prewarm(image_ids)

    async def ready(self, timeout: float = 5.0) -> bool:
        """Whether the scheduler answers and a worker serves (answers its
        `lbdask_depth` handler): the question of a load balancer's health check."""
        try:
            workers = sorted(await asyncio.wait_for(self._client.scheduler.ncores(), timeout))
        except Exception:  # noqa: BLE001 - any failure to reach the scheduler means "not ready"
            return False
        for worker in workers:
            try:
                await asyncio.wait_for(self._client.rpc(worker).lbdask_depth(), timeout)
                return True
            except Exception:  # noqa: BLE001 - no serving there (unknown handler), dead, or slow
                continue
        return False

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncServingClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
