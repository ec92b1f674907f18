"""The serving runtime resident in one Dask worker: cache, pools, model executor, read path.

A read runs on the worker's event loop: the cache lookup is a dict access; anything slow
(archive fetch, pcodec, the model, PNG encoding) runs in the I/O pool, the CPU pool or the
model executor, so image hits are never queued behind decodes. Concurrent reads of one id
share one fetch and one decode (lbdask.routing.coalesce). Decodes spill to another worker when this
one's queue is deeper than theta (serve.spill); their results still fill this cache.
Cached ids whose catalog row changed (lbdask retier) are dropped within `catalog_refresh_s`
(serve.freshness); a fetch that finds its object gone reads the row again once.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lbdask.access.recorder import AccessRecorder
from lbdask.archive import Archive, CatalogRow
from lbdask.cache import DualFormatCache
from lbdask.cache.tuner import MarginalHitTuner
from lbdask.errors import IntegrityError, LbdaskError, StoreError, UnknownImageError
from lbdask.latent.codec import EncodedLatent, LatentCodec
from lbdask.latent.decode import decode_latent, to_png
from lbdask.models.row_models import RowModels
from lbdask.reader import stored_copy
from lbdask.routing.coalesce import Coalescer
from lbdask.serve.decoder import BatchingDecoder, ModelContext, auto_max_batch
from lbdask.serve.freshness import CatalogWatch
from lbdask.serve.latency import ReadLatency
from lbdask.serve.settings import ServeSettings
from lbdask.storage import canonical_url

#: Per-request bookkeeping outside the cache itself (cache keeps image/latent/miss counts).
#: Name of the serving worker plugin (serve.plugin.ServePlugin) that holds a worker's runtime.
PLUGIN_NAME = "lbdask-serve"
COUNTERS = ("requests", "errors", "decodes", "fetches", "fetch_retries", "spillovers", "spilled_in", "prewarmed")


@dataclass(frozen=True)
class Stored:
    """What the latent tier holds for one id: its catalog row and stored form.

    For latent rows the checksummed latent; for every other row the bytes a reader gets
    (`lbdask.reader.stored_copy`, read once at fetch), so a "latent hit" returns them as they are.
    """

    row: CatalogRow
    latent: EncodedLatent | None = None
    original: bytes | None = None

    @property
    def nbytes(self) -> int:
        return self.latent.data.nbytes if self.latent is not None else len(self.original or b"")


class ServeRuntime:
    """One worker's serving state; thread-safe where the pools touch it."""

    def __init__(self, settings: ServeSettings, model: ModelContext, address: str = "",
                 model_check: Any = None) -> None:
        self.settings = settings
        self.address = address
        rc = settings.runtime
        tuner = MarginalHitTuner(settings.tuner) if settings.cache.adaptive else None
        self.cache = DualFormatCache(rc.cache_bytes, settings.cache, tuner=tuner,
                                     alpha=None if tuner else settings.tuner.alpha)
        self.io = ThreadPoolExecutor(rc.io_threads, thread_name_prefix="lbdask-io")
        self.cpu = ThreadPoolExecutor(rc.cpu_threads, thread_name_prefix="lbdask-cpu")
        self.decoder = BatchingDecoder(model, auto_max_batch(rc.max_batch))
        self.coalescer: Coalescer[asyncio.Future] = Coalescer()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.latency = ReadLatency()       # read latency per tier (serve.metrics, the dashboard)
        # EWMAs: the tuner's when adaptive (they drive alpha), else kept here for metrics
        self.t_decode = settings.tuner.t_decode_ms
        self.t_fetch = settings.tuner.t_fetch_ms
        self._seen: set[str] = set()      # kinds of latency measured at least once (_observe)
        self._model_check = model_check   # callable(archive): raise if the model does not fit it
        self._archives: dict[str, Archive] = {}
        self._spellings: dict[str, str] = {}  # dest as a client typed it -> canonical_url(dest)
        self._row_models: dict[str, RowModels] = {}  # archive url -> its other models (re-encoded rows)
        self._others: dict[str, Any] = {}  # fingerprint -> loaded model of another model than the resident one
        self._other_lock = threading.Lock()
        self._lock = threading.Lock()
        self._depth = 0                    # decodes taken on here and not ended (`depth`)
        self.spill: Any = None             # serve.spill.Spillover, set by the plugin
        self.access = AccessRecorder(address, rc.access_flush_s, rc.access_compact_every, rc.access_retention_days)
        self.watch = CatalogWatch(rc.catalog_refresh_s, self._forget)

    # -- the read path ---------------------------------------------------------------
    async def read(self, dest: str, image_id: str, storage_options: dict | None = None) -> bytes:
        """PNG bytes of `image_id` in archive `dest`, equal to `lbdask read DEST ID`; every
        successful read (hit or miss) counts in the archive's access statistics."""
        dest = self.canonical(dest)
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
        dest = self.canonical(dest)
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
        if self.spill is not None and stored.row.model_fingerprint not in self._others:
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
        """Checksum + dequantise (CPU pool) -> model (executor, batched) -> PNG (CPU pool).

        Counts in `depth` from the call: the count is taken before the first await, so the spill
        decision that chose this decode and the next one on the event loop are never apart."""
        with self._taken_on():
            loop = asyncio.get_running_loop()
            row = stored.row
            z = await loop.run_in_executor(self.cpu, LatentCodec(row.bits or 16).decode, stored.latent)
            t0 = time.perf_counter()
            other = self._others.get(row.model_fingerprint or "")
            if other is not None:  # a re-encoded row: its own model, one decode at a time, in the CPU pool
                rgb = await loop.run_in_executor(self.cpu, self._decode_other, other, z, row)
            else:
                rgb = await asyncio.wrap_future(self.decoder.submit(z, (row.height, row.width)))
            self._observe("decode", (time.perf_counter() - t0) * 1000)
            self.counts["decodes"] += 1
            return await loop.run_in_executor(self.cpu, to_png, rgb, row)

    def decode_blocking(self, stored: Stored) -> bytes:
        """`decode_local` from a Dask task thread (the work-stealing spillover path)."""
        with self._taken_on():
            row = stored.row
            z = LatentCodec(row.bits or 16).decode(stored.latent)
            t0 = time.perf_counter()
            rgb = self.decoder.submit(z, (row.height, row.width)).result()
            self._observe("decode", (time.perf_counter() - t0) * 1000)
            self.counts["decodes"] += 1
            return to_png(rgb, row)

    def _decode_other(self, model: Any, z: Any, row: CatalogRow) -> Any:
        with self._other_lock:
            return decode_latent(model, z, (row.height, row.width))

    def _load_other_model(self, archive: Archive, row: CatalogRow) -> None:
        """Load (once per worker) the model of a latent row written by another model than the
        archive's own (lbdask retier re-encode); a one-line error when it cannot be loaded."""
        fp, own = row.model_fingerprint, archive.model_info.get("fingerprint")
        if not fp or not own or fp == own or fp in self._others:
            return
        with self._lock:
            models = self._row_models.setdefault(archive.url, RowModels(archive, lambda: None))
        model = models.get(fp)
        with self._lock:
            self._others[fp] = model

    # -- the archive -----------------------------------------------------------------
    def canonical(self, dest: str) -> str:
        """The one spelling of archive `dest` that keys its cache entries, open archive, access
        statistics and catalog watch (`archive`, `./archive/` and `file://...` are one archive);
        remembered per spelling, so a cache hit stays a dict access."""
        canon = self._spellings.get(dest)
        if canon is None:
            canon = self._spellings.setdefault(dest, canonical_url(dest))
        return canon

    def archive(self, dest: str, options: dict | None) -> Archive:
        """The open archive `dest` (opened once per worker, its model checked)."""
        dest = self.canonical(dest)
        ident = dest + json.dumps(options or {}, sort_keys=True)
        with self._lock:
            archive = self._archives.get(ident)
        if archive is None:  # one try per attempt: the attempts are this runtime's (`fetch_retries`)
            archive = self._with_retries(lambda: Archive.open(dest, mode="r", storage_options=options, attempts=1), dest)
            if self._model_check is not None and archive.model_info.get("fingerprint"):
                self._model_check(archive)
            with self._lock:
                archive = self._archives.setdefault(ident, archive)
            self.watch.add(ident, dest, archive)
        return archive

    def fetch(self, dest: str, image_id: str, options: dict | None) -> Stored:
        """Row + stored form of one id from the archive (I/O pool), with bounded retries."""
        archive = self.archive(dest, options)
        t0 = time.perf_counter()

        def lookup() -> CatalogRow:
            row = archive.get_row(image_id)
            if row is None:
                raise UnknownImageError(image_id, f"no image '{image_id}' in archive {dest}")
            return row

        def attempt() -> Stored:
            row = lookup()
            time.sleep(self.settings.runtime.injected_fetch_s(row.stored_bytes or 0))  # benchmarks only
            try:
                return self._stored(archive, row)
            except IntegrityError:  # its object gone or changed: the row may have moved on (a retier sweep)
                fresh = lookup()
                if fresh == row:
                    raise
                return self._stored(archive, fresh)

        stored = self._with_retries(attempt, dest)
        self.counts["fetches"] += 1
        self._observe("fetch", (time.perf_counter() - t0) * 1000)
        return stored

    def _stored(self, archive: Archive, row: CatalogRow) -> Stored:
        """What the latent tier holds for `row`, read from `archive`."""
        copy = stored_copy(archive, row)  # pixel-tier, kept, lossy, failed: the reader's bytes
        if copy is not None:
            return Stored(row, original=copy)
        self._load_other_model(archive, row)
        return Stored(row, latent=archive.read_latent(row))

    def _with_retries(self, fn: Any, dest: str) -> Any:
        """Run `fn`; retry StoreError `fetch_retries` times with linear backoff, then give up."""
        rc = self.settings.runtime
        for attempt in range(rc.fetch_retries + 1):
            try:
                return fn()
            except StoreError as exc:
                last = exc
                if attempt < rc.fetch_retries:
                    self.counts["fetch_retries"] += 1
                    time.sleep((attempt + 1) * rc.retry_backoff_ms / 1000)
        raise StoreError(f"archive {dest} unreachable after {rc.fetch_retries + 1} attempts: {last}")

    # -- latencies and metrics -------------------------------------------------------
    def _observe(self, what: str, ms: float) -> None:
        """Feed the EWMAs (the first measurement of each kind replaces the configured start)
        and the cache's `auto` promotion threshold."""
        w = self.settings.tuner.ewma_weight if what in self._seen else 1.0
        with self._lock:
            self._seen.add(what)
            tuner = self.cache.tuner
            if what == "decode":
                self.t_decode = (1 - w) * self.t_decode + w * ms
                if tuner is not None:
                    tuner.observe_decode(ms)
            else:
                self.t_fetch = (1 - w) * self.t_fetch + w * ms
                if tuner is not None:
                    tuner.observe_fetch(ms)
            self.cache.set_costs(self.t_decode, self.t_fetch)

    def stats(self) -> dict[str, Any]:
        """Everything the metrics endpoint and the dashboard page show for this worker."""
        cache = self.cache.stats()
        return {**self.counts, "coalesced": self.coalescer.coalesced, "image_hits": cache["image_lookups"], "latent_hits": cache["latent_lookups"],
                "misses": cache["miss_lookups"], "alpha": cache["alpha"], "capacity_bytes": cache["capacity"],
                "image_bytes": cache["image_bytes"], "latent_bytes": cache["latent_bytes"],
                "queue_depth": self.depth, "batches": self.decoder.batches,
                "t_decode_ms": self.t_decode, "t_fetch_ms": self.t_fetch, "access_ids_flushed": self.access.flushed_ids,
                "catalog_dropped": self.watch.dropped}

    def close(self) -> None:
        self.watch.close()
        self.access.close()
        self.decoder.close()
        self.io.shutdown(wait=False, cancel_futures=True)
        self.cpu.shutdown(wait=False, cancel_futures=True)


def runtime_of(worker: Any) -> ServeRuntime:
    """The serving runtime on `worker` (inside a task); LbdaskError when none is installed."""
    runtime = getattr(worker.plugins.get(PLUGIN_NAME), "runtime", None)
    if not isinstance(runtime, ServeRuntime):
        raise LbdaskError(f"no lbdask serving runtime on worker {worker.address}")
    return runtime
