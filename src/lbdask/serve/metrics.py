"""Prometheus metrics of serving: a worker's own, and the cluster's on the scheduler.

Dask's `/metrics` pages render prometheus_client's default registry, so registering one
collector there is all it takes. On a worker the collector reads its serving state when scraped
and costs nothing on the read path; on the scheduler (serve.dashboard) it reads what each
worker's heartbeat last carried (`heartbeat`), so a scrape sends no message to any worker.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from lbdask.serve.latency import TIERS, cumulative

if TYPE_CHECKING:
    from lbdask.serve.worker import ServingWorker

PREFIX = "lbdask_serve_"
#: the scheduler's copies of the same series (another name: a sum over both jobs must not count twice)
CLUSTER_PREFIX = "lbdask_cluster_serve_"
#: key of the serving numbers in a worker's heartbeat metrics (`Worker.metrics`)
HEARTBEAT_KEY = "lbdask_serve"
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


#: gauge -> the counter that is 0 until the gauge holds a measurement (before, it is the config's guess)
MEASURED_BY = {"t_decode_ms": "decodes", "t_fetch_ms": "fetches"}


def measured(stats: Mapping[str, Any]) -> dict[str, Any]:
    """`stats` with the latency EWMAs None until this worker measured one: a worker that never
    decoded shows no T_decode rather than the configured starting value."""
    return {**stats, **{k: None for k, by in MEASURED_BY.items() if not stats.get(by)}}


def heartbeat(serving: ServingWorker) -> dict[str, Any]:
    """What a worker's heartbeat carries to the scheduler: its stats and read-latency histograms."""
    return {**serving.stats(), "read_seconds": serving.latency.snapshot()}


def families(prefix: str, views: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The metric families of some workers, from their `heartbeat` views (worker -> view)."""
    for key, (name, doc) in COUNTERS.items():
        family = CounterMetricFamily(prefix + name, doc, labels=["worker"])
        for worker, view in views.items():
            family.add_metric([worker], view[key])
        yield family
    for key, (name, doc) in GAUGES.items():
        family = GaugeMetricFamily(prefix + name, doc, labels=["worker"])
        for worker, view in views.items():
            value = measured(view)[key]
            if value is not None:   # no sample until measured
                family.add_metric([worker], value)
        yield family
    family = HistogramMetricFamily(prefix + "read_seconds", "Read latency on the owner worker by the tier that "
                                   "answered (image, latent, miss, error), seconds", labels=["worker", "tier"])
    for worker, view in views.items():
        latency = view["read_seconds"]
        for tier in TIERS:
            family.add_metric([worker, tier], cumulative(latency["counts"][tier]), latency["sums"][tier])
    yield family


class Collector:
    """A prometheus_client collector over `views()` (worker -> heartbeat view), named `prefix`*."""

    def __init__(self, prefix: str, views: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.prefix, self.views = prefix, views

    def collect(self) -> Iterator[Metric]:
        return families(self.prefix, self.views())


def register(serving: ServingWorker) -> Collector:
    """Expose `serving` on this process's `/metrics`."""
    collector = Collector(PREFIX, lambda: {serving.address: heartbeat(serving)})
    prometheus_client.REGISTRY.register(collector)
    return collector


def unregister(collector: Collector) -> None:
    try:
        prometheus_client.REGISTRY.unregister(collector)
    except KeyError:  # already gone
        pass
