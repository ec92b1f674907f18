"""Spillover: a decode leaves an overloaded owner, and the PNG comes back to the owner's cache.

Two ways, chosen by `worker.spillover` in configs/serve.yaml:
- `explicit`: the owner polls its peers' decode queue depths (at most every
  `depth_max_age_ms`) and sends the decode to the one lbdask.routing.ring.choose_decoder picks,
  worker to worker, by RPC.
- `steal`: the owner submits the decode as a Dask task restricted to itself with
  `allow_other_workers=True`, and the scheduler's work stealing may move it elsewhere.
docs/serving.md compares the two; either way the owner fills its own cache with the result.
"""
from __future__ import annotations

import asyncio
import logging
import pickle
import time
from typing import TYPE_CHECKING, Any

from lbdask.routing.ring import choose_decoder

if TYPE_CHECKING:
    from lbdask.serve.archives import Stored
    from lbdask.serve.worker import ServingWorker

log = logging.getLogger(__name__)
PEERS_MAX_AGE_S = 2.0   # the worker list changes rarely; depths change all the time


class Spillover:
    """The owner-side spillover decision and transport of one worker's serving state."""

    def __init__(self, serving: ServingWorker, worker: Any) -> None:
        self.serving = serving
        self.worker = worker
        wc = serving.settings.worker
        self.mode, self.theta, self.max_age = wc.spillover, wc.theta, wc.depth_max_age_ms / 1000
        self._depths: dict[str, float] = {}
        self._depths_at = 0.0
        self._peers: list[str] = []
        self._peers_at = 0.0

    async def maybe_spill(self, stored: Stored) -> bytes | None:
        """The PNG decoded elsewhere, or None: decode here (not overloaded, or no better peer)."""
        if self.mode == "off" or self.serving.depth <= self.theta:
            return None
        payload = pickle.dumps(stored)
        if self.mode == "steal":
            return await self._steal(payload)
        depths = await self._queue_depths()
        target = choose_decoder(self.worker.address, depths, self.theta)
        if target == self.worker.address:
            return None
        self._depths[target] = self._depths.get(target, 0) + 1   # until the next poll says otherwise
        try:
            return await self.worker.rpc(target).lbdask_decode(payload=payload)
        except OSError as exc:   # the peer died meanwhile: decode here instead
            log.info("spillover to %s failed (%s); decoding locally", target, exc)
            self._depths.pop(target, None)
            return None

    async def _steal(self, payload: bytes) -> bytes:
        client = self.worker.client   # the worker's own client (public `Worker.client`), created once
        future = client.submit(decode_task, payload, workers=[self.worker.address], allow_other_workers=True,
                               pure=False)
        try:
            return await future
        finally:
            future.release()

    async def _queue_depths(self) -> dict[str, float]:
        now = time.monotonic()
        if now - self._peers_at > PEERS_MAX_AGE_S:
            self._peers = sorted(await self.worker.scheduler.ncores())
            self._peers_at = now
        if now - self._depths_at > self.max_age:
            peers = [p for p in self._peers if p != self.worker.address]
            answers = await asyncio.gather(*(self._depth(p) for p in peers))
            self._depths = {p: d for p, d in zip(peers, answers) if d is not None}
            self._depths_at = now
        return {**self._depths, self.worker.address: self.serving.depth}

    async def _depth(self, peer: str) -> float | None:
        try:
            return await asyncio.wait_for(self.worker.rpc(peer).lbdask_depth(), timeout=1.0)
        except (OSError, asyncio.TimeoutError, KeyError):  # gone, slow, or not serving
            return None


def decode_task(payload: bytes) -> bytes:
    """Dask task of the `steal` mode: decode on whichever worker the scheduler ran it, with that
    worker's one decode path (`decode_local`, on its event loop; this task thread waits)."""
    from distributed import get_worker

    from lbdask.serve.worker import serving_of

    worker = get_worker()
    serving = serving_of(worker)
    serving.counts["spilled_in"] += 1
    return asyncio.run_coroutine_threadsafe(serving.decode_local(pickle.loads(payload)),
                                            worker.loop.asyncio_loop).result()
