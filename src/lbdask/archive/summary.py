"""What `lbdask report` says about an archive: counts, bytes, DRR, PSNR, throughput.

DRR means one thing everywhere (report, job summary, docs): `1 - bytes_stored / bytes_source`
over all inputs the archive holds - latents, kept copies (png or lossless jxl), lossy JPEG XL
and the raw bytes of failed inputs -
with `bytes_stored` measured on the store (every object under latents/, originals/ and
catalog/, Zarr metadata and shard indexes included), not summed from the catalog. Refused
inputs (never read) count on neither side and are listed apart. With no latent at all
nothing was converted, and there is no ratio to give (`drr` is None).
"""
from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from lbdask.archive.history import read_job_records, read_retier_runs
from lbdask.archive.rows import CatalogRow
from lbdask.archive.store import Archive

#: Representations of an input in the archive (CatalogRow.representation), in the order
#: reports list them: kept rows split by kept_format (png / jxl), lossy rows by it too
#: (jxl-lossy / avif-lossy).
REPRESENTATIONS = ("latent", "png", "jxl", "jxl-lossy", "avif-lossy", "failed", "refused")
LOSSY_REPRESENTATIONS = ("jxl-lossy", "avif-lossy")
#: Store parts (Archive.bytes_on_store) that no single representation accounts for.
SHARED_PARTS = ("catalog", "meta")  # meta: the rows' PNG metadata (lbdask.archive.meta)

#: PSNR histogram bin edges in dB; values below the first or above the last get open bins.
PSNR_EDGES = tuple(float(x) for x in range(20, 52, 2))


def psnr_histogram(values: Sequence[float]) -> list[dict[str, Any]]:
    """Counts per PSNR bin; `lo`/`hi` of None mark the open-ended bins."""
    edges = [-math.inf, *PSNR_EDGES, math.inf]
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=edges)
    return [{"lo": None if math.isinf(lo) else lo, "hi": None if math.isinf(hi) else hi, "count": int(n)}
            for lo, hi, n in zip(edges[:-1], edges[1:], counts)]


def psnr_stats(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, 5th percentile and minimum PSNR (the report contract's keys); None when empty."""
    if not values:
        return {"psnr_mean": None, "psnr_p05": None, "psnr_min": None}
    v = np.asarray(values, dtype=np.float64)
    return {"psnr_mean": float(v.mean()), "psnr_p05": float(np.percentile(v, 5)), "psnr_min": float(v.min())}


def representation_of(row: Any) -> str:
    """The breakdown key of a row: CatalogRow.representation (also for rows that are only
    status and sizes, as tests and older job records give)."""
    if row.status == "kept":
        return getattr(row, "kept_format", None) or "png"
    if row.status == "lossy":
        return f"{getattr(row, 'kept_format', None) or 'jxl'}-lossy"
    return row.status


def by_representation(rows: Iterable[Any]) -> dict[str, dict[str, int]]:
    """representation -> images, bytes of their inputs and bytes stored for them (latent:
    pcodec payload; png and failed: the raw source bytes; jxl, jxl-lossy, avif-lossy: the
    JPEG XL or AVIF object; refused: nothing)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        part = out.setdefault(representation_of(r), {"images": 0, "bytes_source": 0, "bytes_stored": 0})
        part["images"] += 1
        part["bytes_source"] += r.source_size
        part["bytes_stored"] += r.stored_bytes
    return out


def merge_representations(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    """Add the counts of `more` (by_representation output) to `into`."""
    for status, part in more.items():
        mine = into.setdefault(status, {"images": 0, "bytes_source": 0, "bytes_stored": 0})
        for key, value in part.items():
            mine[key] += value


def storage(reps: dict[str, dict[str, int]], parts: dict[str, int]) -> dict[str, Any]:
    """bytes_source, bytes_stored, drr and the per-representation breakdown beside them.

    `parts` are measured store bytes (Archive.bytes_on_store, or what one job added to it);
    the breakdown adds `catalog` and `overhead` (Zarr metadata, shard indexes and objects of
    batches that never committed) so that its stored bytes sum to `bytes_stored`.
    """
    empty = {"images": 0, "bytes_source": 0, "bytes_stored": 0}
    breakdown = {s: dict(reps.get(s, empty)) for s in REPRESENTATIONS}
    source = sum(breakdown[s]["bytes_source"] for s in REPRESENTATIONS if s != "refused")
    stored = sum(parts.values())
    breakdown["catalog"] = {"bytes_stored": sum(parts.get(p, 0) for p in SHARED_PARTS)}
    breakdown["pixels"] = {"bytes_stored": parts.get("pixels", 0)}  # the pixel tier: decoded copies of hot objects
    accounted = sum(part["bytes_stored"] for part in breakdown.values())
    breakdown["overhead"] = {"bytes_stored": stored - accounted}
    converted = any(breakdown[s]["images"] for s in ("latent", "jxl", *LOSSY_REPRESENTATIONS)) and source > 0
    return {"bytes_source": source, "bytes_stored": stored,
            "drr": 1.0 - stored / source if converted else None, "representations": breakdown}


def cluster_health(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Worker losses (restarts), retried tasks and peak worker memory over the recorded jobs."""
    seen = [j["cluster"] for j in jobs if isinstance(j.get("cluster"), dict)]
    if not seen:
        return None
    peaks = [c["peak_worker_memory"] for c in seen if c.get("peak_worker_memory")]
    return {"jobs": len(seen),
            "workers_lost": sum(int(c.get("workers_lost", 0)) for c in seen),
            "tasks_retried": sum(int(c.get("tasks_retried", 0)) for c in seen),
            "peak_worker_memory": max(peaks) if peaks else None}


def refinement(steps: Sequence[float], before: Sequence[float], after: Sequence[float],
               jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """PSNR before and after latent refinement of the refined latents (their steps taken,
    PSNR before, PSNR after: one value each), and the compute time it cost."""
    if not steps:
        return None
    return {
        "images": len(steps),
        "steps_mean": float(np.mean(steps)),
        "before": psnr_stats(before),
        "after": psnr_stats(after),
        "seconds": sum(float(j.get("refine_seconds") or 0.0) for j in jobs),
    }


def throughput(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Images/s and source MB/s over the recorded migration jobs (None when none recorded)."""
    timed = [j for j in jobs if j.get("seconds")]
    if not timed:
        return None
    wall = sum(float(j["seconds"]) for j in timed)
    images = sum(int(j.get("images_processed", 0)) for j in timed)
    source = sum(int(j.get("bytes_source", 0)) for j in timed)
    return {"jobs": len(timed), "seconds": wall, "images": images,
            "images_per_s": images / wall, "source_mb_per_s": source / wall / 1e6}


def retier_runs(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Re-tiering runs recorded in the archive (`lbdask retier --apply`): totals and the last run."""
    if not runs:
        return None
    last = runs[-1]
    return {"runs": len(runs), "objects_moved": sum(int(r.get("objects_moved", 0)) for r in runs),
            "last": {"job_id": last.get("job_id"), "job_started": last.get("job_started"),
                     "seconds": last.get("seconds"), "objects_moved": last.get("objects_moved"),
                     "moved": {k: m.get("moved", 0) for k, m in (last.get("moves") or {}).items()},
                     "swept": last.get("swept"), "psnr_demoted": last.get("psnr_demoted"),
                     "reencoded": last.get("reencoded")}}


def summarize(arc: Archive) -> dict[str, Any]:
    """The report of an archive: the design-notes contract keys plus breakdowns."""
    reasons: dict[str, Counter[str]] = {"kept": Counter(), "failed": Counter(), "refused": Counter(),
                                        "lossy": Counter()}
    bits: Counter[str] = Counter()
    # one float per latent (8 bytes in an array, not a Python object): the report's percentiles need them all
    psnrs, lossy_psnrs = array("d"), array("d")
    steps, before, after = array("d"), array("d"), array("d")

    def noted(rows: Iterable[CatalogRow]) -> Iterator[CatalogRow]:  # one pass: rows are not held
        for row in rows:
            if row.status in reasons:
                reasons[row.status][row.reason or "unspecified"] += 1
            if row.status == "lossy" and row.psnr is not None:
                lossy_psnrs.append(float(row.psnr))
            elif row.status == "latent":
                bits[str(row.bits)] += 1
                if row.psnr is not None and math.isfinite(row.psnr):
                    psnrs.append(float(row.psnr))
                if row.refine_steps and row.psnr_initial is not None and row.psnr is not None:
                    steps.append(row.refine_steps)
                    before.append(row.psnr_initial)
                    after.append(row.psnr)
            yield row

    reps = by_representation(noted(arc.rows()))
    on_store = arc.bytes_on_store()
    model = arc.model_info
    jobs = read_job_records(arc)
    counts = {s: reps.get(s, {}).get("images", 0) for s in REPRESENTATIONS}
    bytes_ = storage(reps, on_store)
    return {
        "images_total": sum(counts.values()),
        "images_latent": counts["latent"],
        "images_kept_png": counts["png"] + counts["jxl"],  # every exact kept copy
        "images_failed": counts["failed"],
        "images_refused": counts["refused"],
        "images_lossy": sum(counts[s] for s in LOSSY_REPRESENTATIONS),
        **bytes_,
        **psnr_stats(psnrs),
        "model": model.get("name"),
        "model_fingerprint": model.get("fingerprint"),
        "bytes_stored_by_part": on_store,
        "bytes_latent_payload": bytes_["representations"]["latent"]["bytes_stored"],
        "latent_bits": dict(bits),
        "kept_reasons": dict(reasons["kept"]),
        "failed_reasons": dict(reasons["failed"]),
        "refused_reasons": dict(reasons["refused"]),
        "lossy_reasons": dict(reasons["lossy"]),
        "psnr_lossy": psnr_stats(lossy_psnrs) if lossy_psnrs else None,
        "psnr_histogram": psnr_histogram(psnrs),
        "refinement": refinement(steps, before, after, jobs),
        "throughput": throughput(jobs),
        "cluster": cluster_health(jobs),
        "retier": retier_runs(read_retier_runs(arc)),
        "format_version": arc.format_version,
    }
