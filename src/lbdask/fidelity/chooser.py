"""Per image, the smallest stored representation that meets the policy.

The migration and `lbdask fidelity` both ask this one function, so the report of where
each representation wins is the rule the migration applies. Exact representations (the
kept PNG, lossless JPEG XL) always meet the policy; a lossy one (latent, lossy JPEG XL or AVIF)
must reach `min_psnr` on its real decode, and a latent must also be at most
`max_latent_ratio` x the exact copy (the `no-saving` rule). Ties go to the exact copy,
then to the latent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Representation names, in tie-break order (exact first).
REPRESENTATIONS = ("png", "jxl", "latent", "jxl-lossy", "avif-lossy")
EXACT = frozenset({"png", "jxl"})
#: Lossy copies (status "lossy"): `<kept_format>-lossy`.
LOSSY = frozenset({"jxl-lossy", "avif-lossy"})


@dataclass(frozen=True)
class Option:
    """One way to store an image: its name, stored bytes and PSNR of what a reader gets."""

    representation: str
    bytes: int
    psnr: float = math.inf


def passes(option: Option, exact_bytes: int, min_psnr: float, max_latent_ratio: float) -> bool:
    """Whether `option` meets the policy against the smallest exact copy of `exact_bytes`."""
    if option.representation in EXACT:
        return True
    if not option.psnr >= min_psnr:
        return False
    return option.representation != "latent" or option.bytes <= max_latent_ratio * exact_bytes


def choose(options: Sequence[Option], min_psnr: float, max_latent_ratio: float = 1.0) -> Option:
    """The smallest option that passes; `options` must hold at least one exact copy."""
    exact = [o for o in options if o.representation in EXACT]
    if not exact:
        raise ValueError("choose() needs an exact option (png or jxl) to fall back to")
    floor = min(o.bytes for o in exact)
    ok = [o for o in options if passes(o, floor, min_psnr, max_latent_ratio)]
    return min(ok, key=lambda o: (o.bytes, REPRESENTATIONS.index(o.representation)))
