"""Plan a migration: cut the scanned images into batches, latent candidates by padded shape and
the ones the header already decides (`lbdask.representation.fate`) apart.

Batches are deterministic (ids sorted within a padded-shape bucket, sizes fixed by the settings, id derived
from the member ids), so a rerun after a crash plans the same batches for the same
uncommitted images and a commit that raced the crash is recognised, not duplicated.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from lbdask.representation.batch import Batch, Outcome, padded_shape
from lbdask.representation.fate import pre_decode_outcome
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import SourceItem


def batch_id_for(kind: str, items: list[SourceItem]) -> str:
    """A stable id from the batch kind, its member ids, their content and version stamps (same
    members, bytes and stamps -> same id; a source migrated again after it changed, even
    only its mtime, gets a new batch whose rows record the new stamp)."""
    digest = hashlib.sha256("\n".join(f"{i.id}\0{i.sha256 or ''}" + (f"\0{i.stamp}" if i.stamp else "")
                                      for i in items).encode("utf-8")).hexdigest()[:20]
    return f"{kind}-{digest}"


@dataclass(frozen=True)
class BatchLimits:
    """How many images a batch holds: at least `fill` while `max_pixels` allows, more while
    their pixels stay within `fill_pixels`, never more than `most` (the archive's shard size:
    a batch of small images then fills whole shards, not 8 of their 64 slots)."""

    fill: int
    most: int
    fill_pixels: int
    max_pixels: int | None

    def admits(self, count: int, total: int, px: int) -> bool:
        """Whether a group of `count` images and `total` pixels takes one more of `px` pixels."""
        if count >= self.most or (self.max_pixels is not None and total + px > self.max_pixels):
            return False
        return count < self.fill or total + px <= self.fill_pixels


def _chunks(items: list[SourceItem], limits: BatchLimits, pixels: Callable[[SourceItem], int]) -> list[list[SourceItem]]:
    """Consecutive groups within `limits` (an item above `max_pixels` alone)."""
    groups: list[list[SourceItem]] = []
    total = 0
    for item in items:
        px = pixels(item)
        if not groups or not limits.admits(len(groups[-1]), total, px):
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += px
    return groups


def plan_batches(items: list[SourceItem], settings: JobSettings, pad_multiple: int,
                 max_batch_pixels: int | None = None, shard_size: int | None = None) -> list[Batch]:
    """Group uncommitted items into batches: latent candidates by padded shape, the rest apart.

    A batch holds `batch_size` images, more (up to `shard_size`; None: `batch_size`) while
    their pixels stay within `batch_pixels`, and never more than `max_batch_pixels` pixels
    (`Batch.pixels`; None: no bound; an image above it is a batch alone): the job's share of
    worker memory for batches in flight (src/lbdask/migrate/inflight.py) then bounds their
    pixels, however large, and small images fill their shards (one per batch and precision).
    """
    most = shard_size or settings.batch_size
    limits = BatchLimits(min(settings.batch_size, most), most, settings.batch_pixels, max_batch_pixels)
    buckets: dict[tuple[int, int], list[SourceItem]] = defaultdict(list)
    decided: list[tuple[SourceItem, Outcome]] = []
    for item in sorted(items, key=lambda i: i.id):
        outcome = pre_decode_outcome(item, settings)
        if outcome is None:
            buckets[padded_shape(item.height, item.width, pad_multiple)].append(item)
        else:
            decided.append((item, outcome))
    batches = []
    for shape in sorted(buckets):
        for group in _chunks(buckets[shape], limits, lambda _: shape[0] * shape[1]):
            batches.append(Batch(batch_id_for(f"latent{shape[0]}x{shape[1]}", group), group, padded=shape))
    outcomes = {item.id: outcome for item, outcome in decided}
    kept_pixels = lambda item: item.pixels if outcomes[item.id].status == "kept" else 0  # noqa: E731
    for members in _chunks([item for item, _ in decided], limits, kept_pixels):
        batches.append(Batch(batch_id_for("keep", members), members, outcomes={i.id: outcomes[i.id] for i in members}))
    return batches
