"""Prometheus metrics of a worker's serving runtime, served on the worker's own `/metrics`.

Dask's worker `/metrics` page renders prometheus_client's default registry, so registering
one collector there from the worker plugin is all it takes; the collector reads the
runtime's counters when scraped and costs nothing on the read path.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .runtime import ServeRuntime

PREFIX = "lbdask_serve_"
#: stats() key -> (metric name, help); counters get Prometheus' `_total` suffix
COUNTERS = {
    "requests": ("requests", "Read requests received by this worker (owner side)"),
    "image_hits": ("image_hits", "Reads answered from the image tier"),
    "latent_hits": ("latent_hits", "Reads answered from the latent tier (one decode each)"),
    "misses": ("misses", "Reads that missed both tiers (archive fetch + decode)"),
    "errors": ("errors", "Reads that ended in an error"),
    "decodes": ("decodes", "Latents decoded by this worker's model"),
    "fetches": ("fetches", "Objects fetched from the archive"),
    "fetch_retries": ("fetch_retries", "Archive fetch attempts retried after a store error"),
    "spillovers": ("spillovers", "Decodes this owner sent to the spillover path"),
    "spilled_in": ("spilled_in", "Decodes this worker ran for another owner"),
    "coalesced": ("coalesced", "Reads that joined an in-flight read of the same id"),
    "prewarmed": ("prewarmed", "Ids loaded into this cache by a prewarm call (no bytes sent back)"),
    "access_ids_flushed": ("access_ids_flushed", "Per-id access counts written to the archive's access statistics"),
    "catalog_dropped": ("catalog_dropped", "Cached ids dropped because their catalog row changed (serve.freshness)"),
}
GAUGES = {
    "alpha": ("alpha", "Image-tier fraction of the cache budget"),
    "queue_depth": ("decode_queue_depth", "Decodes taken on by this worker and not ended (decided here or spilled in; decompress, model, PNG)"),
    "t_decode_ms": ("t_decode_ms", "EWMA of the decode latency, queueing included (ms)"),
    "t_fetch_ms": ("t_fetch_ms", "EWMA of the archive fetch latency (ms)"),
    "image_bytes": ("image_bytes", "Bytes held in the image tier"),
    "latent_bytes": ("latent_bytes", "Bytes held in the latent tier"),
    "capacity_bytes": ("capacity_bytes", "Cache budget C of this worker"),
}


class RuntimeCollector:
    """A prometheus_client collector over one runtime, labelled with the worker address."""

    def __init__(self, runtime: ServeRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        stats = self.runtime.stats()
        worker = [self.runtime.address]
        for key, (name, doc) in COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, doc, labels=["worker"])
            family.add_metric(worker, stats[key])
            yield family
        for key, (name, doc) in GAUGES.items():
            family = GaugeMetricFamily(PREFIX + name, doc, labels=["worker"])
            family.add_metric(worker, stats[key])
            yield family


def register(runtime: ServeRuntime) -> RuntimeCollector:
    """Expose `runtime` on this process's `/metrics`."""
    collector = RuntimeCollector(runtime)
    prometheus_client.REGISTRY.register(collector)
    return collector


def unregister(collector: RuntimeCollector) -> None:
    try:
        prometheus_client.REGISTRY.unregister(collector)
    except KeyError:  # already gone
        pass
