"""A batch on its way from pixels to a stored representation: the planned `Batch`, the
`DecodedBatch` after reading, the `EncodedBatch` after the model, the `BatchResult` once
committed, and the `Outcome` of each image that does not become a latent. Migration's tasks pass these between them; re-tiering builds them for its
demote and re-encode moves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lbdask.image.kept import KeptObject, LossyObject
from lbdask.image.pngio import PngChunk
from lbdask.latent.codec import EncodedLatent
from lbdask.representation.sources import SourceItem


@dataclass(frozen=True)
class Outcome:
    """A decision (lbdask.representation.fate) that an image is not stored as a latent: keep, fail,
    refuse or lossy, with the reason.

    Kept and failed inputs are both stored byte-identical (kept ones as their lossless jxl
    copy with --kept-format jxl); a refused one (not a regular file inside SRC, or
    unreadable) is never read, so the archive records only why. "lossy" (lossy JPEG XL) is
    decided after the encode, by the representation chooser.
    """

    status: str  # "kept" | "failed" | "refused" | "lossy"
    reason: str


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


@dataclass
class DecodedBatch:
    """A batch after `read-png`: source bytes, chunks, decisions and the images to encode."""

    batch: Batch
    originals: dict[str, bytes]            # source bytes of every readable item (kept and failed copies come from here)
    chunks: dict[str, list[PngChunk]]
    outcomes: dict[str, Outcome]           # keep/fail decisions made so far
    candidates: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # uint8 (h, w, 3) per candidate, unpadded
    kept: dict[str, KeptObject] = field(default_factory=dict)  # the kept-format copy of every readable item
    lossy: dict[str, LossyObject] = field(default_factory=dict)  # candidates with a passing lossy JPEG XL


@dataclass
class EncodedBatch:
    """Per-candidate latents and their measured fidelity after `encode`."""

    latents: list[EncodedLatent]
    stored_bytes: list[int]                # pcodec bytes of each latent, as its shard stores it
    psnr: list[float]
    psnr_initial: list[float | None]
    refine_steps: list[int]
    decode_sha256: list[str]
    device_class: str
    fingerprint: str
    seconds: float
    refine_seconds: float

    def row_fields(self, k: int) -> dict[str, Any]:
        """The catalog fields of candidate `k`'s latent (bucket and index come from its shard write)."""
        enc = self.latents[k]
        return {"psnr": self.psnr[k], "psnr_initial": self.psnr_initial[k], "refine_steps": self.refine_steps[k],
                "model_fingerprint": self.fingerprint, "bits": enc.bits, "lo": enc.lo, "hi": enc.hi,
                "checksum": enc.checksum, "stored_bytes": self.stored_bytes[k], "decode_sha256": self.decode_sha256[k],
                "device_class": self.device_class}


@dataclass
class BatchResult:
    """What one committed batch did, for the progress bar and the job statistics."""

    batch_id: str
    images: int
    source_bytes: int
    status_counts: dict[str, int]
    representations: dict[str, dict[str, int]]  # representation -> images, source and stored bytes (summary.by_representation)
    reasons: dict[str, int]                # "kept:<reason>" / "failed:<reason>" -> count
    psnr: list[float]                      # latent images only
    psnr_initial: list[float] = field(default_factory=list)  # latent images that were refined
    encode_seconds: float = 0.0
    refine_seconds: float = 0.0
    already_committed: bool = False
    psnr_lossy: list[float] = field(default_factory=list)  # lossy JPEG XL images
