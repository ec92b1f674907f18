"""The migration driver: list, skip committed, scan, plan and run the batch tasks on Dask.

The driver holds no pixels: it submits `read-png -> encode -> write-shard` chains for a
bounded window of batches (memory stays flat however large the source), allocates the
plan's shard numbers once per bucket before the first submission and records the job in the
archive's history.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dask.base import tokenize
from distributed import Client, span

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.creation import archive_meta
from lbdask.archive.history import write_job_record
from lbdask.archive.lease import hold
from lbdask.archive.objects import store_errors
from lbdask.archive.periodic import PeriodicCompactor
from lbdask.cluster.connect import encode_resources
from lbdask.cluster.session import JobSession, job_session
from lbdask.cluster.settings import ClusterSettings
from lbdask.migrate import tasks
from lbdask.migrate.footprint import Footprint
from lbdask.migrate.inflight import PixelBudget, PixelWindow, cluster_budget, run_windowed
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.preflight import check_destination, source_changed
from lbdask.migrate.scan import scan_group
from lbdask.migrate.totals import JobTotals
from lbdask.representation.batch import Batch, BatchResult
from lbdask.representation.listing import ListedSource, iter_source_ids
from lbdask.representation.settings import JobSettings, bits_for
from lbdask.representation.shard import write_shard
from lbdask.representation.sources import SourceItem, with_stamps
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


@dataclass
class Pending:
    """What the listing leaves to do: the ids to scan and the refused entries not yet recorded."""

    listed: int
    todo: list[str]
    refused: list[SourceItem]
    changed: list[str]  # committed sources whose size or version changed since
    stamps: dict[str, str | None] = field(default_factory=dict)  # the listed stamp of each id in `todo`

    @property
    def has_work(self) -> bool:
        return bool(self.todo or self.refused)


def _groups(ids: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def scan(client: Client, req: MigrationRequest, ids: list[str]) -> list[SourceItem]:
    """Hash and probe `ids` on the workers (`scan-png` tasks); refused entries are never read."""
    futures = [
        client.submit(scan_group, req.src, req.storage_options, group, key=f"scan-png-{tokenize(req.src, group)}")
        for group in _groups(ids, req.settings.scan_group)
    ]
    return [item for part in client.gather(futures) for item in part]


def prepare_buckets(arc: Archive, batches: list[Batch], info: dict[str, Any],
                    settings: JobSettings) -> list[tuple[str, int]]:
    """Create every bucket the planned batches can write into and hand each encoding batch its
    shards, one per precision (driver only): one allocation per bucket for the whole plan, so a
    batch's submission costs no store request. Numbers a killed job never wrote stay unused.
    Returns the (bucket, shard) pairs allocated."""
    ds, c = info["downsample"], info["latent_channels"]
    encoding = sorted((b for b in batches if b.encodes), key=lambda b: b.padded)  # stable: plan order per shape
    slots = [(batch, bits) for batch in encoding for bits in bits_for(settings)]
    shapes = [(bits, c, batch.padded[0] // ds, batch.padded[1] // ds) for batch, bits in slots]
    wants = [(arc.bucket_name(*shape), *shape) for shape in shapes]
    numbers = arc.allocate_shards_for(wants)
    for (batch, bits), shard in zip(slots, numbers):
        batch.shards[bits] = shard
    return [(want[0], shard) for want, shard in zip(wants, numbers)]


def submit_batch(client: Client, req: MigrationRequest, batch: Batch, resources: dict[str, float] | None):
    """Submit the batch's read-png -> encode -> write-shard chain (its shards are allocated)."""
    token = tokenize(req.src, req.dest, req.settings, batch.batch_id)
    decoded = client.submit(tasks.read_png, req.src, req.storage_options, batch, req.settings, key=f"read-png-{token}")
    encoded = None
    if batch.encodes:
        from lbdask.representation.encode import encode  # torch: not imported by a no-op rerun

        encoded = client.submit(encode, decoded, req.settings, key=f"encode-{token}", resources=resources)
    return client.submit(write_shard, req.dest, req.storage_options, decoded, encoded, req.settings,
                         key=f"write-shard-{token}")


def run_batches(client: Client, req: MigrationRequest, batches: list[Batch], on_result: Callable[[BatchResult], None],
                max_pixels: int | None = None) -> None:
    """Keep a bounded window of batch chains in flight until every batch is committed:
    `inflight_batches_per_thread` per worker thread and at most `max_pixels` pixels."""
    resources = encode_resources(client, req.cluster.gpu_resource)
    threads = sum(client.nthreads().values()) or 1
    window = PixelWindow(max(2, threads * req.settings.inflight_batches_per_thread), max_pixels)
    run_windowed(batches, lambda b: b.pixels, lambda b: submit_batch(client, req, b, resources), on_result, window)


def run_migration(req: MigrationRequest, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Migrate every uncommitted PNG of `req.src` into `req.dest`; returns the job record.

    DEST is checked and its lease taken before any work: a second migration into the same
    DEST is refused, naming the running one (docs/archive-format.md, "Concurrent jobs").
    """
    check_destination(req.dest, req.storage_options, req.settings)
    with hold(open_location(req.dest, req.storage_options or None), f"lbdask migrate {req.src}"):
        return _migrate(req, log)


def _migrate(req: MigrationRequest, log: Callable[[str], None]) -> dict[str, Any]:
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    listing = iter_source_ids(open_location(req.src, req.storage_options))
    existing = existing_archive(req)
    pending = pending_work(existing, listing, req.remigrate_changed, log)
    if existing is not None and not pending.has_work and existing.model_info.get("name") == req.settings.model:
        return nothing_to_do(req, existing, pending, started_at, t0)  # no cluster, no model
    totals = JobTotals()
    with job_session(req.scheduler, req.cluster, req.workers, TASK_PREFIXES, req.progress, log) as session:
        settings = req.settings
        info = session.load_model(settings.model, settings.weights, settings.precision, settings.runtime)
        run_as = info["inference"]
        log(f"inference: {run_as['runtime']} {run_as['precision']} ({run_as['reason']}); device class {info['device_class']}")
        model_meta = {k: v for k, v in info.items() if k not in ("device_class", "inference")}
        arc = Archive.create(req.dest, model_meta, storage_options=req.storage_options or None)
        phases = {"start": time.perf_counter() - t0, "scan": 0.0, "batches": 0.0}
        budget, footprint = None, None
        if pending.has_work:
            footprint = Footprint(arc)  # what the job may change, sized before it writes
            budget = migrate_pending(session, arc, req, pending, info, totals, phases, log, footprint)
        seconds = time.perf_counter() - t0
        record = job_header(req, info, len(session.client.nthreads()), sum(session.client.nthreads().values()),
                            pending, started_at)
    if not pending.has_work:
        return record | totals.record(seconds, phases, {})
    record["pixels_in_flight"] = {"per_batch": budget.batch, "total": budget.total}
    arc.compact()  # fold what is left of this job's batch objects into the index
    added = footprint.added() if footprint is not None else {}
    record.update(totals.record(seconds, phases, added, session.watch.summary()))
    record["job_id"] = write_job_record(arc, record)
    return record


def existing_archive(req: MigrationRequest) -> Archive | None:
    """DEST's archive, or None before the first job created it."""
    with store_errors(req.dest):
        if archive_meta(open_location(req.dest, req.storage_options or None)) is None:
            return None
    return Archive.open(req.dest, mode="a", storage_options=req.storage_options or None)


def nothing_to_do(req: MigrationRequest, arc: Archive, pending: Pending, started_at: dt.datetime,
                  t0: float) -> dict[str, Any]:
    """The record of a rerun that finds every listed source committed, decided before any
    cluster starts or model loads: the archive's model, no workers, nothing processed."""
    model = arc.model_info
    info = {"name": model.get("name"), "fingerprint": model.get("fingerprint"), "device_class": None, "inference": None}
    seconds = time.perf_counter() - t0
    return job_header(req, info, 0, 0, pending, started_at) | JobTotals().record(
        seconds, {"start": seconds, "scan": 0.0, "batches": 0.0}, {})


def pending_work(arc: Archive | None, listing: Iterable[ListedSource], remigrate_changed: bool,
                 log: Callable[[str], None]) -> Pending:
    """What is left to migrate: listed ids not committed yet (with `remigrate_changed`, also the
    changed sources, whose old rows are folded first so that the new rows win everywhere).

    A merge-join of the listing with the catalog, both ascending by id: it holds no row and no
    listed entry, only what is left to do (nothing, on a rerun of a finished job)."""
    pending = Pending(0, [], [], [])
    for entry, row in joined(listing, arc.rows() if arc is not None else iter(())):
        pending.listed += 1
        if row is not None and not source_changed(entry, row):
            continue
        if row is not None:
            pending.changed.append(entry.id)
            if not remigrate_changed:
                continue
        if entry.refused is not None:
            pending.refused.append(SourceItem(entry.id, 0, refused=entry.refused))
        else:
            pending.todo.append(entry.id)
            pending.stamps[entry.id] = entry.stamp
    if pending.changed:
        log(f"{len(pending.changed)} source(s) changed since migration (size or version differs)"
            + ("; migrating them again" if remigrate_changed else ": --remigrate-changed migrates them again"))
        if remigrate_changed:
            arc.compact()
    return pending


def joined(listing: Iterable[ListedSource], rows: Iterator[CatalogRow]) -> Iterator[tuple[ListedSource, CatalogRow | None]]:
    """Each listed entry with the catalog's row of its id, or None (both streams ascend by id)."""
    row = next(rows, None)
    for entry in listing:
        while row is not None and row.id < entry.id:
            row = next(rows, None)
        yield entry, row if row is not None and row.id == entry.id else None


def migrate_pending(session: JobSession, arc: Archive, req: MigrationRequest, pending: Pending, info: dict[str, Any],
                    totals: JobTotals, phases: dict[str, float], log: Callable[[str], None],
                    footprint: Footprint) -> PixelBudget:
    """Scan, plan and run the batches of `pending` (the `scan` and `batches` phases), compacting
    the catalog every `compact_every_batches` committed batches meanwhile; returns the pixel budget.
    `footprint` sizes the planned batches' objects before they are written."""
    client, settings = session.client, req.settings
    with session.watched("lbdask-migrate"):
        t_scan = time.perf_counter()
        with span("scan"):
            items = with_stamps(scan(client, req, pending.todo), pending.stamps) + pending.refused
        budget = cluster_budget(client, settings.inflight_batches_per_thread, settings.memory_target_bytes)
        batches = plan_batches(items, settings, info["pad_multiple"], budget.batch, arc.shard_size)
        footprint.plan([b.batch_id for b in batches], prepare_buckets(arc, batches, info, settings))
        t_batches = time.perf_counter()
        phases["scan"] = t_batches - t_scan
        with (session.progress_bar(len(items), sum(i.size for i in items), "migrate") as bar, span("batches"),
              PeriodicCompactor(arc, settings.compact_every_batches, log) as compactor):
            run_batches(client, req, batches,
                        lambda r: (totals.add(r), bar.update(r), compactor.committed(int(not r.already_committed))),
                        budget.total)
        phases["batches"] = time.perf_counter() - t_batches
    return budget


def job_header(req: MigrationRequest, info: dict[str, Any], workers: int, threads: int, pending: Pending,
               started_at: dt.datetime) -> dict[str, Any]:
    """The part of the job record that says what ran where, on what."""
    return {
        "job_started": started_at.isoformat(timespec="seconds"),
        "src": req.src,
        "dest": req.dest,
        "model": info["name"],
        "model_fingerprint": info["fingerprint"],
        "device_class": info["device_class"],
        "inference": info["inference"],
        "workers": workers,
        "threads": threads,
        "images_listed": pending.listed,
        "images_already_committed": pending.listed - len(pending.todo) - len(pending.refused),
        "sources_changed": len(pending.changed),
        "sources_changed_remigrated": req.remigrate_changed and bool(pending.changed),
        "settings": asdict(req.settings),
    }
