"""Plan a migration: decide what each scanned image becomes and cut the work into batches.

Batches are deterministic (ids sorted within a padded-shape bucket, fixed size, id derived
from the member ids), so a rerun after a crash plans the same batches for the same
uncommitted images and a commit that raced the crash is recognised, not duplicated.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from lbdask.cluster.settings import JobSettings
from lbdask.migrate.scan import SourceItem

#: Reasons an image is kept as its original PNG (catalog `reason` of status "kept").
KEEP_FIDELITY = "fidelity"
KEEP_TRANSPARENCY = "transparency"
KEEP_PALETTE = "palette"
KEEP_GREYSCALE = "greyscale"
KEEP_16BIT = "16-bit"
KEEP_TOO_SMALL = "too-small"
KEEP_TOO_LARGE = "too-large"
KEEP_NO_SAVING = "no-saving"
KEEP_ANIMATED = "animated"
#: Reason of a lossy JPEG XL row whose latent met the policy but was larger.
LOSSY_SMALLER = "lossy-smaller"


@dataclass(frozen=True)
class Outcome:
    """A decision made before any pixel is decoded: keep, fail or refuse, with the reason.

    Kept and failed inputs are both stored byte-identical (kept ones as their lossless jxl
    copy with --kept-format jxl); a refused one (not a regular file inside SRC, or
    unreadable) is never read, so the archive records only why. "lossy" (lossy JPEG XL) is
    decided after the encode, by the representation chooser.
    """

    status: str  # "kept" | "failed" | "refused" | "lossy"
    reason: str


def pre_decode_outcome(item: SourceItem, settings: JobSettings) -> Outcome | None:
    """What the header alone decides for `item`; None means "try it as a latent"."""
    if item.refused:
        return Outcome("refused", item.refused)
    if item.error:
        return Outcome("failed", item.error)
    if item.pixels > settings.bomb_pixels:
        return Outcome(
            "failed",
            f"decompression bomb guard: {item.width}x{item.height} = {item.pixels} pixels exceeds {settings.bomb_pixels}",
        )
    if item.animated:
        return Outcome("kept", KEEP_ANIMATED)
    if item.bit_depth == 16:
        return Outcome("kept", KEEP_16BIT)
    if item.mode == "P":
        return Outcome("kept", KEEP_PALETTE)
    if item.mode in ("L", "LA"):
        return Outcome("kept", KEEP_GREYSCALE)
    if min(item.width, item.height) < settings.min_side:
        return Outcome("kept", KEEP_TOO_SMALL)
    if item.pixels > settings.max_pixels:
        return Outcome("kept", KEEP_TOO_LARGE)
    return None


def post_encode_outcome(psnr: float, latent_bytes: int, source_bytes: int, settings: JobSettings) -> Outcome | None:
    """What the measured round trip decides; None means "store the latent".

    A latent bigger than `max_latent_ratio` x its kept copy (`source_bytes`: the PNG, or its
    jxl copy; line art, UI screenshots) would cost storage and fidelity at once, so the
    copy stays; below `min_psnr` it stays too.
    """
    if latent_bytes > settings.max_latent_ratio * source_bytes:
        return Outcome("kept", KEEP_NO_SAVING)
    if psnr < settings.min_psnr:
        return Outcome("kept", KEEP_FIDELITY)
    return None


@dataclass
class Batch:
    """Work for one batch task chain: encode candidates of one padded shape, or keep/fail only."""

    batch_id: str
    items: list[SourceItem]
    padded: tuple[int, int] | None = None  # (H, W) shared by all items; None for a keep-only batch
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # decided before decoding
    shards: dict[int, int] = field(default_factory=dict)  # bits -> shard number, set by the driver

    @property
    def encodes(self) -> bool:
        return self.padded is not None

    @property
    def source_bytes(self) -> int:
        return sum(i.size for i in self.items)

    @property
    def pixels(self) -> int:
        """Pixels the batch may hold decoded: its padded images, or the images it keeps
        (a kept copy may be decoded to re-encode it); never those of refused or failed ones."""
        if self.padded is not None:
            return len(self.items) * self.padded[0] * self.padded[1]
        return sum(i.pixels for i in self.items if self.outcomes[i.id].status == "kept")


def padded_shape(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Image size rounded up to the model's padding multiple."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def batch_id_for(kind: str, items: list[SourceItem]) -> str:
    """A stable id from the batch kind, its member ids, their content and version stamps (same
    members, bytes and stamps -> same id; a source migrated again after it changed, even
    only its mtime, gets a new batch whose rows record the new stamp)."""
    digest = hashlib.sha256("\n".join(f"{i.id}\0{i.sha256 or ''}" + (f"\0{i.stamp}" if i.stamp else "")
                                      for i in items).encode("utf-8")).hexdigest()[:20]
    return f"{kind}-{digest}"


def _chunks(items: list[SourceItem], size: int, pixels: Callable[[SourceItem], int],
            max_pixels: int | None) -> list[list[SourceItem]]:
    """Consecutive groups of at most `size` items and `max_pixels` pixels (an item above it alone)."""
    groups: list[list[SourceItem]] = []
    total = 0
    for item in items:
        px = pixels(item)
        if not groups or len(groups[-1]) >= size or (max_pixels is not None and total + px > max_pixels):
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += px
    return groups


def plan_batches(items: list[SourceItem], settings: JobSettings, pad_multiple: int,
                 max_batch_pixels: int | None = None) -> list[Batch]:
    """Group uncommitted items into batches: latent candidates by padded shape, the rest apart.

    A batch holds at most `batch_size` images and `max_batch_pixels` pixels (`Batch.pixels`;
    None: no bound; an image above it is a batch alone): the job's share of worker memory
    for batches in flight (src/lbdask/migrate/inflight.py) then bounds their pixels, however large.
    """
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
        for group in _chunks(buckets[shape], settings.batch_size, lambda _: shape[0] * shape[1], max_batch_pixels):
            batches.append(Batch(batch_id_for(f"latent{shape[0]}x{shape[1]}", group), group, padded=shape))
    outcomes = {item.id: outcome for item, outcome in decided}
    kept_pixels = lambda item: item.pixels if outcomes[item.id].status == "kept" else 0  # noqa: E731
    for members in _chunks([item for item, _ in decided], settings.batch_size, kept_pixels, max_batch_pixels):
        batches.append(Batch(batch_id_for("keep", members), members, outcomes={i.id: outcomes[i.id] for i in members}))
    return batches
