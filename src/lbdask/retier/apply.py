"""Apply a plan as a Dask job: chunks of moves as `retier-<kind>` tasks, then the sweep.

Runs on the embedded local cluster or `--scheduler ADDR`, through the job session every job
uses (lbdask.cluster.session: cluster start, resident model plugin, progress bar, cluster
watch). The archive's lease is held throughout, so a migration or another run cannot write
beside it. A run killed at
any point leaves every object readable (rows move only to verified copies; the sweep,
src/lbdask/retier/sweep.py, deletes only objects no row references) and the next run finishes
the plan.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.history import write_retier_run
from lbdask.archive.lease import hold
from lbdask.archive.model_table import bucket_for, register_model
from lbdask.archive.periodic import PeriodicCompactor
from lbdask.archive.summary import psnr_stats
from lbdask.errors import ConfigError
from lbdask.representation.batch import padded_shape
from lbdask.representation.settings import bits_for
from lbdask.retier.moves import MODEL_KINDS, Chunk, ChunkResult, MoveContext
from lbdask.retier.sweep import sweep
from lbdask.tiering.plan import KINDS, Plan


@dataclass
class ApplyRequest:
    """Everything `lbdask retier --apply` was asked to do."""

    dest: str
    plan: Plan
    rows: dict[str, CatalogRow]  # the current rows of the ids the plan moves
    ctx: MoveContext
    batch_size: int
    storage_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    progress: bool = True
    prewarm_scheduler: str | None = None  # the serving cluster (policy prewarm.scheduler)


def batch_id(stamp: str, kind: str, ids: list[str]) -> str:
    """`rt<stamp>-<kind>-<digest>`: sorts after every migration batch and every earlier run's,
    so that the newest row of an id wins (docs/archive-format.md)."""
    return f"rt{stamp}-{kind}-{hashlib.sha256(chr(0).join(ids).encode()).hexdigest()[:16]}"


def make_chunks(arc: Archive, req: ApplyRequest, stamp: str, pad_multiple: int | None,
                target: dict[str, Any] | None = None) -> list[Chunk]:
    """Cut each kind's ids into chunks; demote and reencode chunks share a padded shape and own
    fresh shards (re-encode: in the buckets of `target`, model Y's info)."""
    out = []
    for kind in KINDS:
        if kind == "prewarm":  # not a task of this job: a call to the serving cluster (`prewarm`)
            continue
        pad = {"demote": pad_multiple, "reencode": target and target["pad_multiple"]}.get(kind)
        groups: dict[Any, list[str]] = {}
        for image_id in req.plan.moves[kind]:
            row = req.rows.get(image_id)
            groups.setdefault(padded_shape(row.height, row.width, pad) if pad else None, []).append(image_id)
        for shape, members in sorted(groups.items(), key=lambda g: str(g[0])):
            out += [Chunk(kind, batch_id(stamp, kind, part), part, padded=shape)
                    for part in (members[i:i + req.batch_size] for i in range(0, len(members), req.batch_size))]
    allocate_chunk_shards(arc, [c for c in out if c.padded is not None], req.ctx.settings, target)
    return out


def allocate_chunk_shards(arc: Archive, chunks: list[Chunk], settings: Any, target: dict[str, Any] | None) -> None:
    """Hand each latent-writing chunk one fresh shard per precision: one allocation per bucket for
    the whole run (`Archive.allocate_shards_for`), not one store request per chunk."""
    slots, wants = [], []
    for chunk in chunks:
        info = target if chunk.kind == "reencode" else arc.model_info
        ds, c = info["downsample"], info["latent_channels"]
        h, w = chunk.padded[0] // ds, chunk.padded[1] // ds
        for bits in bits_for(settings):
            slots.append((chunk, bits))
            wants.append((bucket_for(arc, info["fingerprint"], bits, c, h, w), bits, c, h, w))
    for (chunk, bits), shard in zip(slots, arc.allocate_shards_for(wants)):
        chunk.shards[bits] = shard


def apply_plan(req: ApplyRequest, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Execute `req.plan` under the archive's lease; returns (and records) the run summary."""
    from lbdask.storage import open_location

    with hold(open_location(req.dest, req.storage_options or None), f"lbdask retier {req.dest}"):
        return _apply(req, log)


def _apply(req: ApplyRequest, log: Callable[[str], None]) -> dict[str, Any]:
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    arc = Archive.open(req.dest, mode="a", storage_options=req.storage_options or None)
    if req.batch_size > arc.shard_size:
        raise ConfigError(f"retier batch_size {req.batch_size} is larger than the archive's shard size {arc.shard_size}")
    stamp = f"{started:%Y%m%dT%H%M%S}"
    results: list[ChunkResult] = []
    watch, workers = None, 0
    if any(req.plan.moves[k] for k in KINDS if k != "prewarm"):
        watch, workers = _run_chunks(arc, req, stamp, results, log)
    swept = sweep(arc)  # also with nothing to move: finishes the sweep of a run killed during it
    arc.compact()
    if req.plan.moves["prewarm"]:
        results.append(prewarm(req))
    summary = summarize_run(req.plan, results)
    summary.update({"job_id": f"{stamp}-{uuid.uuid4().hex[:8]}", "job_started": started.isoformat(timespec="seconds"),
                    "dest": req.dest, "seconds": round(time.perf_counter() - t0, 3), "workers": workers,
                    "swept": swept, "cluster": watch.summary() if watch else None})
    write_retier_run(arc, summary)
    return summary


def prewarm(req: ApplyRequest) -> ChunkResult:
    """Load the predicted-hot set into the serving cluster's caches; `moved` = ids it loaded."""
    from lbdask.serve.client import ServingClient

    ids = req.plan.moves["prewarm"]
    with ServingClient(req.dest, req.prewarm_scheduler, storage_options=req.storage_options or None) as box:
        loaded = box.prewarm(ids)
    res = ChunkResult("prewarm", "", len(ids), moved=loaded)
    if loaded < len(ids):
        res.skipped["not loaded (unknown or unreadable)"] = len(ids) - loaded
    return res


def _run_chunks(arc: Archive, req: ApplyRequest, stamp: str, results: list[ChunkResult],
                log: Callable[[str], None]) -> tuple[Any, int]:
    """Every chunk of the plan as a `retier-<kind>` task on the cluster; returns the cluster watch and worker count."""
    from dask.base import tokenize
    from distributed import as_completed

    from lbdask.cluster.session import job_session
    from lbdask.cluster.settings import load_cluster_settings
    from lbdask.retier.tasks import run_chunk

    with job_session(req.scheduler, load_cluster_settings(), req.workers, ("retier-",), req.progress, log) as session:
        client = session.client
        pad = None
        if any(req.plan.moves[k] for k in MODEL_KINDS):
            info = arc.model_info
            loaded = session.load_model(info["name"], req.weights, req.ctx.settings.precision, req.ctx.settings.runtime)
            arc.check_model(loaded["fingerprint"], loaded["name"])
            pad = loaded["pad_multiple"]
        target = add_target_model(client, arc, req.ctx) if req.plan.moves["reencode"] else None
        chunks = make_chunks(arc, req, stamp, pad, target)
        with (session.progress_bar(sum(len(c.ids) for c in chunks), 0, "retier") as bar, session.watched("lbdask-retier"),
              PeriodicCompactor(arc, req.ctx.settings.compact_every_batches, log) as compactor):
            futures = [client.submit(run_chunk, req.dest, req.storage_options, c, req.ctx,
                                     key=f"retier-{c.kind}-{tokenize(c.batch_id)}") for c in chunks]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                bar.update(result)
                compactor.committed(int(not result.already_committed))  # the catalog stays folded during a long run
                future.release()
        return session.watch, len(client.nthreads())


def add_target_model(client: Any, arc: Archive, ctx: MoveContext) -> dict[str, Any]:
    """Model Y's info as a worker loads it, entered in the archive's model table before any
    latent of it is written."""
    from dask.base import tokenize

    from lbdask.retier.reencode import target_info

    spec = ctx.reencode
    target = client.submit(target_info, spec, ctx.settings.precision, ctx.settings.runtime,
                           key=f"reencode-model-info-{tokenize(spec, time.time())}", pure=False).result()
    if target["fingerprint"] == spec.from_fingerprint:
        raise ConfigError(f"reencode.to {spec.to} is the model reencode.from names ({spec.from_fingerprint[:12]})")
    register_model(arc, target, {"model": spec.to, "weights": spec.weights})
    return target


def summarize_run(plan: Plan, results: list[ChunkResult]) -> dict[str, Any]:
    """Per kind: planned, moved, skipped (by reason), bytes before and after; PSNR of demoted objects."""
    moves = {k: {"planned": len(plan.moves[k]), "moved": 0, "bytes_before": 0, "bytes_after": 0, "skipped": {},
                 "chunks_already_committed": 0} for k in KINDS}
    psnr, fidelity = [], []
    for r in results:
        fidelity.extend(r.fidelity)
        m = moves[r.kind]
        m["moved"] += r.moved
        m["bytes_before"] += r.source_bytes
        m["bytes_after"] += r.bytes_after
        m["chunks_already_committed"] += int(r.already_committed)
        for why, n in r.skipped.items():
            m["skipped"][why] = m["skipped"].get(why, 0) + n
        psnr.extend(r.psnr)
    return {"moves": moves, "objects_moved": sum(m["moved"] for m in moves.values()),
            "psnr_demoted": psnr_stats(psnr), "reencoded": reencode_summary(fidelity), "notes": dict(plan.notes)}


def reencode_summary(fidelity: list[tuple[float | None, float, str]]) -> dict[str, Any]:
    """The fidelity change of re-encoded objects: PSNR before and after, the change, copies used."""
    before = [b for b, _, _ in fidelity if b is not None]
    change = [a - b for b, a, _ in fidelity if b is not None]
    copies: dict[str, int] = {}
    for _, _, copy in fidelity:
        copies[copy] = copies.get(copy, 0) + 1
    return {"objects": len(fidelity), "copies": copies, "psnr_before": psnr_stats(before),
            "psnr_after": psnr_stats([a for _, a, _ in fidelity]),
            "psnr_change_mean": float(sum(change) / len(change)) if change else None,
            "psnr_change_min": min(change) if change else None}
