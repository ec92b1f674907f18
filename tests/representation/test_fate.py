"""An encoded batch's candidates through `fate.decide_candidates`: each one becomes a latent
(grouped by its precision, for one shard write per precision) or gets the outcome its gate
decides - the chooser with the lossy fallback for a migration and a demote, the PSNR floor
for a re-encode."""
from __future__ import annotations

import numpy as np

from lbdask.image.kept import KeptObject, LossyObject
from lbdask.latent.codec import EncodedLatent
from lbdask.representation.batch import Batch, DecodedBatch, EncodedBatch, Outcome
from lbdask.representation.fate import KEEP_FIDELITY, KEEP_NO_SAVING, LOSSY_SMALLER, decide_candidates, psnr_floor
from lbdask.representation.settings import JobSettings

SETTINGS = JobSettings(min_psnr=30.0, max_latent_ratio=1.0)


def batch(candidates: dict[str, tuple[int, int, float, int | None]]) -> tuple[DecodedBatch, EncodedBatch]:
    """id -> (bits, latent bytes, latent PSNR, lossy bytes or None); every kept copy is 1000 bytes."""
    decoded = DecodedBatch(Batch("b", [], padded=(8, 8)), {}, {}, {})
    for image_id, (_, _, _, lossy) in candidates.items():
        decoded.candidates.append(image_id)
        decoded.kept[image_id] = KeptObject("png", b"p" * 1000)
        if lossy is not None:
            decoded.lossy[image_id] = LossyObject(b"j" * lossy, 1.0, 35.0, "")
    values = list(candidates.values())
    latents = [EncodedLatent(np.zeros((1, 1, 1), np.uint16), bits, None, None, "") for bits, *_ in values]
    encoded = EncodedBatch(latents, [n for _, n, _, _ in values], [p for _, _, p, _ in values], [None] * len(values),
                           [0] * len(values), [""] * len(values), "cpu", "f" * 64, 0.0, 0.0)
    return decoded, encoded


def test_the_chooser_keeps_latents_by_precision_and_gives_the_others_their_outcome():
    decoded, encoded = batch({"a": (8, 100, 40.0, None), "b": (6, 90, 35.0, None), "c": (8, 200, 38.0, None),
                              "big": (8, 1500, 40.0, None), "blurry": (8, 100, 20.0, None),
                              "lossy": (8, 600, 38.0, 300)})
    fates = decide_candidates(decoded, encoded, SETTINGS)
    assert fates.latents == {8: [0, 2], 6: [1]}
    assert fates.outcomes == {"big": Outcome("kept", KEEP_NO_SAVING), "blurry": Outcome("kept", KEEP_FIDELITY),
                              "lossy": Outcome("lossy", LOSSY_SMALLER)}


def test_the_psnr_floor_keeps_only_what_passes_however_large():
    decoded, encoded = batch({"ok": (8, 5000, 31.0, None), "low": (8, 10, 29.9, None)})
    fates = decide_candidates(decoded, encoded, SETTINGS, gate=psnr_floor)
    assert fates.latents == {8: [0]} and fates.outcomes == {"low": Outcome("kept", KEEP_FIDELITY)}


def test_a_lossy_avif_copy_is_weighed_like_lossy_jpeg_xl():
    """The chooser sees an AVIF candidate as `avif-lossy`: smaller than a passing latent, it wins;
    larger, the latent stays."""
    decoded, encoded = batch({"small": (8, 600, 38.0, None), "large": (8, 600, 38.0, None)})
    decoded.lossy["small"] = LossyObject(b"a" * 300, None, 35.0, "", "avif", 40, 10)
    decoded.lossy["large"] = LossyObject(b"a" * 700, None, 35.0, "", "avif", 60, 8)
    fates = decide_candidates(decoded, encoded, SETTINGS)
    assert fates.latents == {8: [1]} and fates.outcomes == {"small": Outcome("lossy", LOSSY_SMALLER)}
