"""One Dask worker's serving state and read path: cache, pools, model executor, archives.

A read runs on the worker's event loop: the cache lookup is a dict access; anything slow
(archive fetch, pcodec, the model, PNG encoding) runs in the I/O pool, the CPU pool or the
model executor, so image hits are never queued behind decodes. Concurrent reads of one id
share one fetch and one decode (lbdask.routing.coalesce). Decodes spill to another worker when this
one's queue is deeper than theta (serve.spill); their results still fill this cache.
Cached ids whose catalog row changed (lbdask retier) are dropped within `catalog_refresh_s`
(serve.freshness). Archives are opened and fetched by serve.archives.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lbdask.access.recorder import AccessRecorder
from lbdask.archive import Archive, CatalogRow
from lbdask.cache import DualFormatCache
from lbdask.cache.tuner import LatencyEstimates
from lbdask.errors import LbdaskError
from lbdask.latent.codec import LatentCodec
from lbdask.latent.decode import decode_latent, to_png
from lbdask.routing.coalesce import Coalescer
from lbdask.serve.archives import FetchHook, ServedArchives, Stored
from lbdask.serve.decoder import BatchingDecoder, ModelContext, auto_max_batch
from lbdask.serve.freshness import CatalogWatch
from lbdask.serve.latency import ReadLatency
from lbdask.serve.settings import ServeSettings

#: Name of the serving worker plugin (serve.plugin.ServePlugin) that holds a worker's ServingWorker.
PLUGIN_NAME = "lbdask-serve"
#: Per-request bookkeeping outside the cache itself (cache keeps image/latent/miss counts).
COUNTERS = ("requests", "errors", "decodes", "fetches", "spillovers", "spilled_in", "prewarmed")


class ServingWorker:
    """What one Dask worker holds to serve reads; thread-safe where the pools touch it.

    Named for its job, not "runtime": in lbdask that word means the inference runtime
    (torch | openvino) only; a serving worker's settings are serve.yaml's `worker:` section.
    """

    def __init__(self, settings: ServeSettings, model: ModelContext, address: str = "",
                 model_check: Callable[[Archive], None] | None = None, fetch_hook: FetchHook | None = None) -> None:
        self.settings = settings
        self.address = address
        wc = settings.worker
        self.cache = DualFormatCache.from_settings(wc.cache_bytes, settings)
        # T_decode / T_fetch: the tuner's EWMAs when adaptive (they drive alpha), the same estimates without it
        self.costs: LatencyEstimates = self.cache.tuner or LatencyEstimates(settings.tuner)
        self.io = ThreadPoolExecutor(wc.io_threads, thread_name_prefix="lbdask-io")
        self.cpu = ThreadPoolExecutor(wc.cpu_threads, thread_name_prefix="lbdask-cpu")
        self.decoder = BatchingDecoder(model, auto_max_batch(wc.max_batch))
        self.coalescer: Coalescer[asyncio.Future] = Coalescer()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.latency = ReadLatency()       # read latency per tier (serve.metrics, the dashboard)
        self._lock = threading.Lock()
        self._other_lock = threading.Lock()  # models of re-encoded rows decode one at a time
        self._depth = 0                    # decodes taken on here and not ended (`depth`)
        self.spill: Any = None             # serve.spill.Spillover, set by the plugin
        self.access = AccessRecorder(address, wc.access_flush_s, wc.access_compact_every, wc.access_retention_days)
        self.watch = CatalogWatch(wc.catalog_refresh_s, self._forget)
        self.archives = ServedArchives(wc, self.watch, model_check, fetch_hook)

    # -- the read path ---------------------------------------------------------------
    async def read(self, dest: str, image_id: str, storage_options: dict | None = None) -> bytes:
        """PNG bytes of `image_id` in archive `dest`, equal to `lbdask read DEST ID`; every
        successful read (hit or miss) counts in the archive's access statistics."""
        dest = self.archives.canonical(dest)
        t0 = time.perf_counter()
        try:
            png, tier = await self._read(dest, image_id, storage_options)
        except Exception:
            self.latency.observe("error", time.perf_counter() - t0)
            raise
        self.latency.observe(tier, time.perf_counter() - t0)
        self.access.record(dest, storage_options, image_id)
        return png

    async def _read(self, dest: str, image_id: str, storage_options: dict | None) -> tuple[bytes, str]:
        """(PNG bytes, the tier that answered: image, latent or miss)."""
        self.counts["requests"] += 1
        key = (dest, image_id)
        version = self.watch.version  # before the lookup: see serve.freshness
        found = self.cache.lookup(key)
        if found.outcome == "image":
            return found.value, "image"
        return await self._shared(key, found.value, storage_options, version), found.outcome

    async def prewarm(self, dest: str, image_ids: list[str], storage_options: dict | None = None) -> int:
        """Load ids into this cache as a miss would (fetch, decode, fill), without a lookup:
        no hit or miss and no access is counted, no bytes go back; returns how many loaded."""
        dest = self.archives.canonical(dest)
        version = self.watch.version
        done = await asyncio.gather(*(self._shared((dest, i), None, storage_options, version) for i in image_ids),
                                    return_exceptions=True)
        loaded = sum(not isinstance(d, BaseException) for d in done)
        self.counts["prewarmed"] += loaded
        return loaded

    async def _shared(self, key: tuple[str, str], held: Stored | None, storage_options: dict | None,
                      version: int) -> bytes:
        """`_produce` once for all concurrent callers of one id (lbdask.routing.coalesce); the cache is
        filled only if no catalog change was seen since `version` (serve.freshness)."""
        waiter = asyncio.get_running_loop().create_future()
        if not self.coalescer.join(key, waiter):
            return await waiter
        try:
            png = await self._produce(key, held, storage_options, version)
        except BaseException as exc:
            self.counts["errors"] += 1
            for w in self.coalescer.finish(key):
                if not w.done():
                    w.set_exception(exc)
            raise
        for w in self.coalescer.finish(key):
            if not w.done():
                w.set_result(png)
        return png

    async def _produce(self, key: tuple[str, str], held: Stored | None, options: dict | None, version: int) -> bytes:
        loop = asyncio.get_running_loop()
        stored = held
        if stored is None:
            stored = await loop.run_in_executor(self.io, self.fetch, key[0], key[1], options)
        if stored.original is not None:
            png = stored.original
        else:
            png = await self.decode(stored)
        if self.watch.version == version:
            self.cache.fill(key, stored, png, latent_size=stored.nbytes, image_size=len(png))
        return png

    def _forget(self, dest: str, image_ids: set[str]) -> None:
        """Drop ids whose catalog row changed from the cache (called by the catalog watch)."""
        for image_id in image_ids:
            self.cache.discard((dest, image_id))

    async def decode(self, stored: Stored) -> bytes:
        """Decode here, or on another worker when this one is overloaded (result comes back);
        rows of another model than the archive's (re-encoded) always decode here. No await lies
        between a "decode here" answer and `decode_local` taking its count (see `depth`)."""
        if self.spill is not None and stored.model is None:
            png = await self.spill.maybe_spill(stored)
            if png is not None:
                self.counts["spillovers"] += 1
                return png
        return await self.decode_local(stored)

    @property
    def depth(self) -> int:
        """The decode queue depth spillover decides on and reports (peers, stats, metrics): decodes
        this worker has taken on and not ended, from the moment one is decided to run here (its
        own, spilled in from a peer, or a stolen task) through decompression, the model and PNG
        encoding. Counting from the decision, not from the model executor's queue, is what lets
        the next decision see it: a burst whose fetches end together decides before any of its
        latents is decompressed, and would otherwise see depth 0 every time."""
        return self._depth

    @contextlib.contextmanager
    def _taken_on(self) -> Iterator[None]:
        """Count one decode in `depth` for the `with` block; released once however it ends
        (result, error, cancellation)."""
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1

    async def decode_local(self, stored: Stored) -> bytes:
        """Checksum + dequantise (CPU pool) -> model (executor, batched) -> PNG (CPU pool); the one
        decode of every caller (a task thread waits for it on the event loop: serve.spill).

        Counts in `depth` from the call: the count is taken before the first await, so the spill
        decision that chose this decode and the next one on the event loop are never apart."""
        with self._taken_on():
            loop = asyncio.get_running_loop()
            row = stored.row
            z = await loop.run_in_executor(self.cpu, LatentCodec(row.bits or 16).decode, stored.latent)
            t0 = time.perf_counter()
            if stored.model is not None:  # a re-encoded row: its own model, one decode at a time, in the CPU pool
                rgb = await loop.run_in_executor(self.cpu, self._decode_other, stored.model, z, row)
            else:
                rgb = await asyncio.wrap_future(self.decoder.submit(z, (row.height, row.width)))
            self._observe(self.costs.observe_decode, t0)
            self.counts["decodes"] += 1
            return await loop.run_in_executor(self.cpu, to_png, rgb, row)

    def _decode_other(self, model: Any, z: Any, row: CatalogRow) -> Any:
        with self._other_lock:
            return decode_latent(model, z, (row.height, row.width))

    # -- fetching and latencies -------------------------------------------------------
    def fetch(self, dest: str, image_id: str, options: dict | None) -> Stored:
        """Row + stored form of one id from the archive (I/O pool, serve.archives), timed into T_fetch."""
        archive = self.archives.open(dest, options)
        t0 = time.perf_counter()
        stored = self.archives.fetch(archive, dest, image_id)
        self.counts["fetches"] += 1
        self._observe(self.costs.observe_fetch, t0)
        return stored

    def _observe(self, observe: Callable[[float], None], t0: float) -> None:
        """Feed the ms since `t0` to one of the EWMAs (`costs.observe_decode` or `_fetch`) and
        re-derive the cache's `auto` promotion threshold from both."""
        ms = (time.perf_counter() - t0) * 1000
        with self._lock:
            observe(ms)
            self.cache.set_costs(self.costs.t_decode, self.costs.t_fetch)

    def stats(self) -> dict[str, Any]:
        """Everything the metrics endpoint and the dashboard page show for this worker."""
        cache = self.cache.stats()
        return {**self.counts, "fetch_retries": self.archives.retries, "coalesced": self.coalescer.coalesced,
                "image_hits": cache["image_lookups"], "latent_hits": cache["latent_lookups"],
                "misses": cache["miss_lookups"], "alpha": cache["alpha"], "capacity_bytes": cache["capacity"],
                "image_bytes": cache["image_bytes"], "latent_bytes": cache["latent_bytes"],
                "queue_depth": self.depth, "batches": self.decoder.batches,
                "t_decode_ms": self.costs.t_decode, "t_fetch_ms": self.costs.t_fetch,
                "access_ids_flushed": self.access.flushed_ids, "catalog_dropped": self.watch.dropped}

    def close(self) -> None:
        self.watch.close()
        self.access.close()
        self.decoder.close()
        self.io.shutdown(wait=False, cancel_futures=True)
        self.cpu.shutdown(wait=False, cancel_futures=True)


def serving_of(worker: Any) -> ServingWorker:
    """The serving state on `worker` (inside a task); LbdaskError when none is installed."""
    serving = getattr(worker.plugins.get(PLUGIN_NAME), "serving", None)
    if not isinstance(serving, ServingWorker):
        raise LbdaskError(f"lbdask serving is not installed on worker {worker.address}")
    return serving
