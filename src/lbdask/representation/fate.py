"""An image's fate, decided here and nowhere else: latent, kept copy, lossy copy, failed or refused.

Decisions come in the order the pipeline learns things: the header (`pre_decode_outcome`,
when planning), reading and decoding the file (`unreadable`, `undecodable`,
`pixel_outcome`), then the measured round trip, where `lbdask.fidelity.chooser` weighs every
representation (`choose_representation`; re-encode's gate is `psnr_floor`). An image not
stored as a latent gets an `Outcome` (lbdask.representation.batch) with one of the reasons below.
`decide_candidates` applies one of those to a whole encoded batch. Migration and
re-tiering both decide through this module.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lbdask.fidelity.chooser import LOSSY, Option, choose
from lbdask.representation.batch import DecodedBatch, EncodedBatch, Outcome
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import SourceItem

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
#: Reason of a lossy row (JPEG XL or AVIF) whose latent met the policy but was larger.
LOSSY_SMALLER = "lossy-smaller"


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


def unreadable(error: Exception) -> Outcome:
    """A source file that could not be fetched: refused, never stored."""
    return Outcome("refused", f"unreadable: {error}")


def undecodable(error: Exception) -> Outcome:
    """A file that is no valid PNG after all: failed, its raw bytes stored as they are."""
    return Outcome("failed", str(error))


def pixel_outcome(alpha: np.ndarray | None) -> Outcome | None:
    """What the decoded pixels decide: a used alpha channel keeps the image (a latent has none)."""
    if alpha is not None and alpha.min() < 255:
        return Outcome("kept", KEEP_TRANSPARENCY)
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


def choose_representation(decoded: DecodedBatch, encoded: EncodedBatch, k: int, settings: JobSettings) -> Outcome | None:
    """Candidate `k`'s outcome by `lbdask.fidelity.chooser`: None for the latent, else kept / lossy with the reason."""
    image_id = decoded.candidates[k]
    copy = decoded.kept[image_id]
    options = [Option(copy.format, len(copy.data)), Option("latent", encoded.stored_bytes[k], encoded.psnr[k])]
    lossy = decoded.lossy.get(image_id)
    if lossy is not None:
        options.append(Option(f"{lossy.format}-lossy", len(lossy.data), lossy.psnr))
    winner = choose(options, settings.min_psnr, settings.max_latent_ratio)
    if winner.representation == "latent":
        return None
    why = post_encode_outcome(encoded.psnr[k], encoded.stored_bytes[k], len(copy.data), settings)
    if winner.representation in LOSSY:
        return Outcome("lossy", why.reason if why else LOSSY_SMALLER)
    return Outcome("kept", why.reason if why else KEEP_NO_SAVING)


def psnr_floor(decoded: DecodedBatch, encoded: EncodedBatch, k: int, settings: JobSettings) -> Outcome | None:
    """Re-encode's gate: a new latent below `min_psnr` is not used (the object keeps what it had)."""
    return Outcome("kept", KEEP_FIDELITY) if encoded.psnr[k] < settings.min_psnr else None


Gate = Callable[[DecodedBatch, EncodedBatch, int, JobSettings], Outcome | None]


@dataclass
class CandidateFates:
    """The fates of an encoded batch's candidates."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)  # image id -> why it is not a latent
    latents: dict[int, list[int]] = field(default_factory=dict)  # bits -> candidate indices stored as latents


def decide_candidates(decoded: DecodedBatch, encoded: EncodedBatch, settings: JobSettings,
                      gate: Gate = choose_representation) -> CandidateFates:
    """Each candidate through `gate`: a latent (grouped by its precision) or an outcome."""
    fates = CandidateFates()
    for k, image_id in enumerate(decoded.candidates):
        outcome = gate(decoded, encoded, k, settings)
        if outcome is None:
            fates.latents.setdefault(encoded.latents[k].bits, []).append(k)
        else:
            fates.outcomes[image_id] = outcome
    return fates
