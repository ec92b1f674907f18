"""When a decoded image replaces its latent: `promote_after` hits, or `auto` from measured costs.

A latent hit pays a decode; an image hit pays nothing. When a decode costs more than
PROMOTE_FETCHES fetches (CPU decoding: seconds against milliseconds), keeping the latent
only to save bytes costs more than the fetches it saves, so `auto` admits the decoded
image at once (threshold 0). Otherwise, with the ghost tuner, `auto` follows
`tuned_threshold` (promote at the first latent hit or after AUTO_FALLBACK, chosen per
window from the ghost lists); without a tuner it waits AUTO_FALLBACK latent hits, the paper's h.
"""
from __future__ import annotations

from typing import Literal

from numba import njit

#: A decode worth more than this many fetches promotes at the first decode (auto).
PROMOTE_FETCHES = 3.0
#: auto's threshold when decodes are cheap: the paper's h.
AUTO_FALLBACK = 8
#: auto's eager threshold (ghost tuner): promote at the first latent hit.
AUTO_EAGER = 1

PromoteAfter = int | Literal["auto"]


def promotion_threshold(setting: PromoteAfter, t_decode_ms: float, t_fetch_ms: float,
                        tuned: int = AUTO_FALLBACK) -> int:
    """Latent hits before promotion; 0 admits the decoded image on a miss already.

    `tuned`: the ghost tuner's choice for `auto` when decodes are not dear (else AUTO_FALLBACK).
    """
    if setting != "auto":
        return int(setting)
    return 0 if t_decode_ms >= PROMOTE_FETCHES * t_fetch_ms else tuned


@njit(cache=True)
def early_hit(hits: int) -> bool:
    """A hit on an object with `hits` earlier hits since admission that one threshold decodes
    and the other serves as an image: 1 <= hits < AUTO_FALLBACK."""
    return 1 <= hits < AUTO_FALLBACK


@njit(cache=True)
def tuned_threshold(early_hits: int, ghost_saving: float, t_decode: float, early_bytes: int,
                    ghost_bytes: int) -> int:
    """Promote at the first latent hit when the decodes it saves in a window (early hits x
    T_decode) outweigh the value of the extra bytes early images hold: `early_bytes` (image
    minus latent size of the cached objects with early_hit) at the ghost lists' measured
    value, `ghost_saving` per `ghost_bytes`."""
    return AUTO_EAGER if early_hits * t_decode * ghost_bytes > ghost_saving * early_bytes else AUTO_FALLBACK
