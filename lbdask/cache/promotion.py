"""When a decoded image replaces its latent: `promote_after` hits, or `auto` from measured costs.

A latent hit pays a decode; an image hit pays nothing. When a decode costs more than
PROMOTE_FETCHES fetches (CPU decoding: seconds against milliseconds), keeping the latent
only to save bytes costs more than the fetches it saves, so `auto` admits the decoded
image at once (threshold 0); otherwise it waits AUTO_FALLBACK latent hits, the paper's h.
"""
from __future__ import annotations

from typing import Literal

#: A decode worth more than this many fetches promotes at the first decode (auto).
PROMOTE_FETCHES = 3.0
#: auto's threshold when decodes are cheap: the paper's h.
AUTO_FALLBACK = 8

PromoteAfter = int | Literal["auto"]


def promotion_threshold(setting: PromoteAfter, t_decode_ms: float, t_fetch_ms: float) -> int:
    """Latent hits before promotion; 0 admits the decoded image on a miss already."""
    if setting != "auto":
        return int(setting)
    return 0 if t_decode_ms >= PROMOTE_FETCHES * t_fetch_ms else AUTO_FALLBACK
