"""Running totals over a migration's committed batches, and the job record made of them (stored in the
archive by `lbdask.archive.history.write_job_record`, printed at the end, shown by `lbdask report`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lbdask.archive.summary import merge_representations, psnr_histogram, psnr_stats, storage
from lbdask.representation.batch import BatchResult


@dataclass
class JobTotals:
    """Running totals over the batches of one job."""

    images: int = 0
    source_bytes: int = 0
    statuses: Counter = field(default_factory=Counter)
    representations: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)
    psnr: list[float] = field(default_factory=list)
    psnr_initial: list[float] = field(default_factory=list)
    psnr_lossy: list[float] = field(default_factory=list)
    encode_seconds: float = 0.0
    refine_seconds: float = 0.0
    batches: int = 0
    batches_already_committed: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.images += result.images
        self.source_bytes += result.source_bytes
        self.statuses.update(result.status_counts)
        merge_representations(self.representations, result.representations)
        self.reasons.update(result.reasons)
        self.psnr.extend(result.psnr)
        self.psnr_initial.extend(result.psnr_initial)
        self.psnr_lossy.extend(result.psnr_lossy)
        self.encode_seconds += result.encode_seconds
        self.refine_seconds += result.refine_seconds
        self.batches_already_committed += int(result.already_committed)

    def record(self, seconds: float, phases: dict[str, float], stored_parts: dict[str, int],
                cluster: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-ready job record of these totals (the part `lbdask report` shows per job).

        `phases` splits `seconds` into start-up (cluster, model), scan and batches, so that the
        steady rate of the pipeline is seen apart from the job's fixed costs. `stored_parts` is
        what this job added to the store, measured (`footprint.Footprint`: the objects the job
        can change, sized before and after it), so its DRR is the report's DRR restricted to
        this job's inputs. `cluster`: worker losses, retried tasks and peak worker memory (`src/lbdask/cluster/watch.py`).
        """
        batch_seconds = phases.get("batches", 0.0)
        return {
            "images_processed": self.images,
            "images_latent": self.statuses.get("latent", 0),
            "images_kept_png": self.statuses.get("kept", 0),  # png and jxl copies (representations splits them)
            "images_failed": self.statuses.get("failed", 0),
            "images_refused": self.statuses.get("refused", 0),
            "images_lossy": self.statuses.get("lossy", 0),
            "reasons": dict(sorted(self.reasons.items())),
            **storage(self.representations, stored_parts),
            "bytes_stored_by_part": dict(stored_parts),
            "cluster": cluster,
            "seconds": round(seconds, 3),
            "images_per_s": round(self.images / seconds, 4) if seconds > 0 else None,
            "mb_per_s": round(self.source_bytes / 1e6 / seconds, 4) if seconds > 0 else None,
            "phase_seconds": {name: round(value, 3) for name, value in phases.items()},
            "batch_images_per_s": round(self.images / batch_seconds, 4) if batch_seconds > 0 else None,
            "encode_seconds": round(self.encode_seconds, 3),
            "refine_seconds": round(self.refine_seconds, 3),
            "batches": self.batches,
            "batches_already_committed": self.batches_already_committed,
            **psnr_stats(self.psnr),
            "psnr_initial": psnr_stats(self.psnr_initial) if self.psnr_initial else None,
            "psnr_histogram": psnr_histogram(self.psnr),
            "psnr_lossy": psnr_stats(self.psnr_lossy) if self.psnr_lossy else None,
        }
