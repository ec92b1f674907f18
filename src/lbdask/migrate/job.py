"""The migration driver: list, skip committed, scan, plan and run the batch tasks on Dask.

The driver holds no pixels: it submits `read-png -> encode -> write-shard` chains for a
bounded window of batches (memory stays flat however large the source), allocates
shard numbers just before each submission and records the job's statistics in the archive.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dask.base import tokenize
from distributed import Client, span

from lbdask.archive import Archive
from lbdask.archive.lease import hold
from lbdask.cluster.connect import connect, dashboard_link, encode_resources
from lbdask.cluster.progress import MigrationProgress
from lbdask.cluster.settings import ClusterSettings, JobSettings
from lbdask.cluster.watch import ClusterWatch
from lbdask.latent.codec import SUPPORTED_BITS
from lbdask.migrate import tasks
from lbdask.migrate.inflight import PixelWindow, pixel_budget, run_windowed
from lbdask.migrate.plan import Batch, plan_batches
from lbdask.migrate.preflight import changed_sources, check_destination
from lbdask.migrate.scan import SourceItem, list_source_ids, scan_group, with_stamps
from lbdask.migrate.stats import JobStats
from lbdask.models.resident import ResidentModel, model_info
from lbdask.storage import open_location

#: Key prefixes of this job's tasks (retried ones are counted by the cluster watch).
TASK_PREFIXES = ("scan-png-", "read-png-", "encode-", "write-shard-", "model-info-")


@dataclass
class MigrationRequest:
    """Everything `lbdask migrate` was asked to do."""

    src: str
    dest: str
    settings: JobSettings
    cluster: ClusterSettings
    scheduler: str | None = None
    workers: int | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    remigrate_changed: bool = False  # migrate again the sources whose size or version changed since


def _groups(ids: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _weights_path(weights: str | None) -> str | None:
    """An existing local weights folder made absolute, so workers elsewhere find it too."""
    return os.path.abspath(weights) if weights and os.path.exists(weights) else weights


def scan(client: Client, req: MigrationRequest, ids: list[str]) -> list[SourceItem]:
    """Hash and probe `ids` on the workers (`scan-png` tasks); refused entries are never read."""
    futures = [
        client.submit(scan_group, req.src, req.storage_options, group, key=f"scan-png-{tokenize(req.src, group)}")
        for group in _groups(ids, req.settings.scan_group)
    ]
    return [item for part in client.gather(futures) for item in part]


def bits_for(settings: JobSettings) -> tuple[int, ...]:
    """The precisions a batch may write: one, or all candidates with `auto`."""
    return SUPPORTED_BITS if settings.latent_bits == "auto" else (settings.latent_bits,)


def prepare_buckets(arc: Archive, batches: list[Batch], info: dict[str, Any], settings: JobSettings) -> None:
    """Create every bucket the planned batches can write into (driver only)."""
    ds, c = info["downsample"], info["latent_channels"]
    for shape in sorted({b.padded for b in batches if b.encodes}):
        for bits in bits_for(settings):
            arc.ensure_bucket(arc.bucket_name(bits, c, shape[0] // ds, shape[1] // ds), bits, c, shape[0] // ds, shape[1] // ds)


def submit_batch(client: Client, arc: Archive, req: MigrationRequest, batch: Batch, info: dict[str, Any],
                 resources: dict[str, float] | None):
    """Allocate the batch's shards and submit its read-png -> encode -> write-shard chain."""
    if batch.encodes:
        ds, c = info["downsample"], info["latent_channels"]
        h, w = batch.padded[0] // ds, batch.padded[1] // ds
        batch.shards = {bits: arc.allocate_shards(arc.bucket_name(bits, c, h, w), 1) for bits in bits_for(req.settings)}
    token = tokenize(req.src, req.dest, req.settings, batch.batch_id)
    decoded = client.submit(tasks.read_png, req.src, req.storage_options, batch, req.settings, key=f"read-png-{token}")
    encoded = None
    if batch.encodes:
        encoded = client.submit(tasks.encode, decoded, req.settings, key=f"encode-{token}", resources=resources)
    return client.submit(tasks.write_shard, req.dest, req.storage_options, decoded, encoded, req.settings,
                         key=f"write-shard-{token}")


def run_batches(client: Client, arc: Archive, req: MigrationRequest, batches: list[Batch], info: dict[str, Any],
                on_result: Callable[[tasks.BatchResult], None], max_pixels: int | None = None) -> None:
    """Keep a bounded window of batch chains in flight until every batch is committed:
    `inflight_batches_per_thread` per worker thread and at most `max_pixels` pixels."""
    resources = encode_resources(client, req.cluster.gpu_resource)
    threads = sum(client.nthreads().values()) or 1
    window = PixelWindow(max(2, threads * req.settings.inflight_batches_per_thread), max_pixels)
    run_windowed(batches, lambda b: b.pixels, lambda b: submit_batch(client, arc, req, b, info, resources), on_result, window)


def run_migration(req: MigrationRequest, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Migrate every uncommitted PNG of `req.src` into `req.dest`; returns the job statistics.

    DEST is checked and its lease taken before any work: a second migration into the same
    DEST is refused, naming the running one (docs/archive-format.md, "Concurrent jobs").
    """
    check_destination(req.dest, req.storage_options, req.settings)
    with hold(open_location(req.dest, req.storage_options or None), f"lbdask migrate {req.src}"):
        return _migrate(req, log)


def _migrate(req: MigrationRequest, log: Callable[[str], None]) -> dict[str, Any]:
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    listing = list_source_ids(open_location(req.src, req.storage_options))
    settings = req.settings
    with connect(req.scheduler, req.cluster, req.workers) as client:
        link = dashboard_link(client)
        if link and req.progress:
            log(f"dashboard: {link}")
        client.register_plugin(ResidentModel(settings.model, _weights_path(settings.weights), settings.precision, settings.runtime))
        info = client.submit(model_info, key=f"model-info-{tokenize(settings.model, time.time())}", pure=False).result()
        run_as = info["inference"]
        log(f"inference: {run_as['runtime']} {run_as['precision']} ({run_as['reason']}); device class {info['device_class']}")
        model_meta = {k: v for k, v in info.items() if k not in ("device_class", "inference")}
        arc = Archive.create(req.dest, model_meta, storage_options=req.storage_options or None)
        committed = {r.id: r for r in arc.rows()}
        changed = changed_sources(listing, committed)
        if changed:
            log(f"{len(changed)} source(s) changed since migration (size or version differs)"
                + ("; migrating them again" if req.remigrate_changed else ": --remigrate-changed migrates them again"))
            if req.remigrate_changed:
                arc.compact()  # their old rows are folded first, so the new rows win everywhere
                committed = {i: r for i, r in committed.items() if i not in set(changed)}
        listed = len(listing.sizes) + len(listing.refused)
        todo = [i for i in listing.sizes if i not in committed]
        refused = [SourceItem(i, 0, refused=r) for i, r in listing.refused.items() if i not in committed]
        stats = JobStats()
        phases = {"start": time.perf_counter() - t0, "scan": 0.0, "batches": 0.0}
        watch = ClusterWatch(client, TASK_PREFIXES)
        if todo or refused:
            before = arc.bytes_on_store()
            with span("lbdask-migrate"), watch:
                t_scan = time.perf_counter()
                with span("scan"):
                    items = with_stamps(scan(client, req, todo), listing) + refused
                budget = pixel_budget(client.scheduler_info(n_workers=-1)["workers"].values(), settings.inflight_batches_per_thread,
                                      settings.memory_target_bytes)
                batches = plan_batches(items, settings, info["pad_multiple"], budget.batch)
                prepare_buckets(arc, batches, info, settings)
                t_batches = time.perf_counter()
                phases["scan"] = t_batches - t_scan
                bar = MigrationProgress(len(items), sum(i.size for i in items), enabled=req.progress)
                try:
                    with span("batches"):
                        run_batches(client, arc, req, batches, info, lambda r: (stats.add(r), bar.update(r)), budget.total)
                finally:
                    bar.close()
                phases["batches"] = time.perf_counter() - t_batches
        seconds = time.perf_counter() - t0
        summary = {
            "job_started": started_at.isoformat(timespec="seconds"),
            "src": req.src,
            "dest": req.dest,
            "model": info["name"],
            "model_fingerprint": info["fingerprint"],
            "device_class": info["device_class"],
            "inference": info["inference"],
            "workers": len(client.nthreads()),
            "threads": sum(client.nthreads().values()),
            "images_listed": listed,
            "images_already_committed": listed - len(todo) - len(refused),
            "sources_changed": len(changed),
            "sources_changed_remigrated": req.remigrate_changed and bool(changed),
            "settings": asdict(settings),
        }
    if todo or refused:
        summary["pixels_in_flight"] = {"per_batch": budget.batch, "total": budget.total}
        arc.compact()  # fold this job's batch objects into the hash-partitioned index
        after = arc.bytes_on_store()
        added = {part: after.get(part, 0) - before.get(part, 0) for part in after}
        summary.update(stats.summary(seconds, phases, added, watch.summary()))
        summary["job_id"] = arc.write_job_stats(summary)
    else:
        summary.update(stats.summary(seconds, phases, {}))
    return summary
