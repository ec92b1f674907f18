"""What `lbdask report` says about an archive: counts, bytes, DRR, PSNR, throughput.

`bytes_stored` is measured on the store (every object under latents/, originals/ and
catalog/, Zarr metadata and shard indexes included), not summed from the catalog.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from .store import Archive

#: PSNR histogram bin edges in dB; values below the first or above the last get open bins.
PSNR_EDGES = tuple(float(x) for x in range(20, 52, 2))


def psnr_histogram(values: list[float]) -> list[dict[str, Any]]:
    """Counts per PSNR bin; `lo`/`hi` of None mark the open-ended bins."""
    edges = [-math.inf, *PSNR_EDGES, math.inf]
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=edges)
    return [{"lo": None if math.isinf(lo) else lo, "hi": None if math.isinf(hi) else hi, "count": int(n)}
            for lo, hi, n in zip(edges[:-1], edges[1:], counts)]


def psnr_stats(values: list[float]) -> dict[str, float | None]:
    """Mean, 5th percentile and minimum PSNR (the report contract's keys); None when empty."""
    if not values:
        return {"psnr_mean": None, "psnr_p05": None, "psnr_min": None}
    v = np.asarray(values, dtype=np.float64)
    return {"psnr_mean": float(v.mean()), "psnr_p05": float(np.percentile(v, 5)), "psnr_min": float(v.min())}


def refinement(rows: list[Any], jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """PSNR before and after latent refinement, steps taken, and the compute time it cost."""
    if not rows:
        return None
    return {
        "images": len(rows),
        "steps_mean": float(np.mean([r.refine_steps for r in rows])),
        "before": psnr_stats([r.psnr_initial for r in rows]),
        "after": psnr_stats([r.psnr for r in rows]),
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


def summarize(arc: Archive) -> dict[str, Any]:
    """The report of an archive: the design-notes contract keys plus breakdowns."""
    status: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {"kept": Counter(), "failed": Counter(), "lossy": Counter()}
    by_rep: dict[str, dict[str, int]] = {}
    lossy_psnrs: list[float] = []
    bits: Counter[str] = Counter()
    psnrs: list[float] = []
    refined = []
    bytes_source = latent_payload = 0
    for row in arc.rows():
        status[row.status] += 1
        bytes_source += row.source_size
        rep = by_rep.setdefault(row.representation, {"images": 0, "bytes": 0, "bytes_source": 0})
        rep["images"] += 1
        rep["bytes"] += row.stored_bytes
        rep["bytes_source"] += row.source_size
        if row.status == "lossy" and row.psnr is not None:
            lossy_psnrs.append(float(row.psnr))
        if row.status in reasons:
            reasons[row.status][row.reason or "unspecified"] += 1
        elif row.status == "latent":
            bits[str(row.bits)] += 1
            latent_payload += row.stored_bytes
            if row.psnr is not None and math.isfinite(row.psnr):
                psnrs.append(float(row.psnr))
            if row.refine_steps and row.psnr_initial is not None and row.psnr is not None:
                refined.append(row)
    on_store = arc.bytes_on_store()
    stored = sum(on_store.values())
    model = arc.model_info
    jobs = arc.read_job_stats()
    return {
        "images_total": sum(status.values()),
        "images_latent": status["latent"],
        "images_kept_png": status["kept"],
        "images_failed": status["failed"],
        "bytes_source": bytes_source,
        "bytes_stored": stored,
        "drr": 1.0 - stored / bytes_source if bytes_source else None,
        **psnr_stats(psnrs),
        "model": model.get("name"),
        "model_fingerprint": model.get("fingerprint"),
        "bytes_stored_by_part": on_store,
        "bytes_latent_payload": latent_payload,
        "latent_bits": dict(bits),
        "kept_reasons": dict(reasons["kept"]),
        "failed_reasons": dict(reasons["failed"]),
        "images_lossy": status["lossy"],
        "lossy_reasons": dict(reasons["lossy"]),
        "representations": dict(sorted(by_rep.items())),
        "psnr_lossy": psnr_stats(lossy_psnrs) if lossy_psnrs else None,
        "psnr_histogram": psnr_histogram(psnrs),
        "refinement": refinement(refined, jobs),
        "throughput": throughput(jobs),
        "format_version": arc.format_version,
    }
