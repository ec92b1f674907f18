"""Online marginal-hit tuning of the image/latent split alpha (paper section 4.3, eq. 1-2).

Default `ghost` gradient: each tier keeps ghost entries (ids and sizes of the objects it
evicted) for `ghost` x C bytes beyond its capacity, ARC-style. A lookup found in tier X's
ghost would have been a hit had X been that much larger: an image-ghost hit saves
T_decode + T_fetch, a latent-ghost hit T_fetch. Both ghosts hold the same bytes, so the
two savings compare per byte even when one object is large against a tier's tail. A
window closes after `ghost_events` ghost hits (or `window` lookups) and alpha moves by
`ghost_step` times the normalised difference of the savings: far when one tier clearly
wins, little near the balance point.

Tail-hit gradients (`per_byte`, `paper`):
The paper's delta_img and delta_lat are tail-hit rates of tails of tau * alpha * C and
tau * (1 - alpha) * C bytes: unequal slices of capacity, which biases eq. 2 toward the
larger tier (alpha runs away to a clamp). The default `per_byte` gradient divides each
by its tier's share (alpha, 1 - alpha), making D the derivative of eq. 1 per byte moved;
`paper` keeps eq. 2 as printed. docs/simulation.md compares the two.

The gradient and the step are numba-compiled plain functions so that the Python cache
(used by serving workers) and the compiled simulator kernel apply the very same rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from numba import njit

from lbdask.cache.promotion import AUTO_EAGER, AUTO_FALLBACK, tuned_threshold
from lbdask.errors import ConfigError

#: Tail-hit gradients keep alpha this far from 0 and 1 (see next_alpha).
TAIL_CLAMP = 0.05


@njit(cache=True)
def marginal_gradient(requests: int, image_misses: int, full_misses: int, image_tail_hits: int,
                      latent_tail_hits: int, t_decode: float, t_fetch: float, alpha: float,
                      per_byte: bool) -> float:
    """D of eq. 2 from one window's counters; D < 0 means the image tier is worth more.

    per_byte scales the marginal rates by the tier shares (see the module docstring).
    """
    if requests == 0:
        return 0.0
    mr_img = image_misses / requests
    d_img = image_tail_hits / requests
    if image_misses == 0:
        mr_lat = 0.0
        d_lat = 0.0
    else:
        mr_lat = full_misses / image_misses
        d_lat = latent_tail_hits / image_misses
    if per_byte:
        d_img = d_img / max(alpha, 1e-9)
        d_lat = d_lat / max(1.0 - alpha, 1e-9)
    return -d_img * (t_decode + t_fetch * mr_lat) + t_fetch * mr_img * d_lat


@njit(cache=True)
def next_alpha(alpha: float, gradient: float, step: float, alpha_min: float, alpha_max: float) -> float:
    """One signed step of alpha against the gradient, clamped to [alpha_min, alpha_max] and
    [TAIL_CLAMP, 1 - TAIL_CLAMP]: a tier of zero bytes has no tail hits and could never regrow."""
    if gradient < 0.0:
        alpha = alpha + step
    elif gradient > 0.0:
        alpha = alpha - step
    return min(alpha_max, 1.0 - TAIL_CLAMP, max(alpha_min, TAIL_CLAMP, alpha))


@njit(cache=True)
def ghost_savings(image_ghost_misses: int, image_ghost_latents: int, latent_ghost_misses: int,
                  t_decode: float, t_fetch: float) -> tuple[float, float]:
    """(image, latent) ms a window's ghost hits would have saved had each tier held its ghost's bytes.

    Image-ghost hits save T_decode + T_fetch on a miss, T_decode on a latent hit; latent-ghost
    hits save T_fetch on a miss.
    """
    return (image_ghost_misses * (t_decode + t_fetch) + image_ghost_latents * t_decode,
            latent_ghost_misses * t_fetch)


@njit(cache=True)
def ghost_gradient(image_ghost_misses: int, image_ghost_latents: int, latent_ghost_misses: int,
                   t_decode: float, t_fetch: float) -> float:
    """Saving of growing the latent tier minus that of growing the image tier (ghost_savings),
    over their sum: in [-1, 1]; < 0 means the image tier is worth more."""
    img, lat = ghost_savings(image_ghost_misses, image_ghost_latents, latent_ghost_misses, t_decode, t_fetch)
    if img + lat <= 0.0:
        return 0.0
    return (lat - img) / (img + lat)


@njit(cache=True)
def ghost_alpha(alpha: float, gradient: float, step: float, alpha_min: float, alpha_max: float) -> float:
    """alpha moved by step x the normalised gradient, clamped to [alpha_min, alpha_max]."""
    return min(alpha_max, max(alpha_min, alpha - step * gradient))


@njit(cache=True)
def window_due(requests: int, ghost_hits: int, window: int, ghost_events: int, ghost: bool) -> bool:
    """A window closes after `window` lookups or, with ghosts, after `ghost_events` ghost hits."""
    return requests >= window or (ghost and ghost_hits >= ghost_events)


@njit(cache=True)
def ghost_capacity(total: int, fraction: float) -> int:
    """Bytes of each tier's ghost list for a total budget C."""
    return int(fraction * total)


@dataclass
class TunerConfig:
    """Tuning parameters; defaults are the paper's simulation defaults (section 6.5).

    alpha is clamped to [alpha_min, alpha_max]; the tail-hit gradients also to [0.05, 0.95]
    (a tier of zero capacity has no tail hits, so alpha could never come back). Ghost lists
    also record what a zero-byte tier would have held (src/lbdask/cache/dual.py), so the ghost
    gradient may use the whole range.
    """

    alpha: float = 0.5              # starting image fraction
    step: float = 0.005             # Delta
    window: int = 1_000_000         # W, requests per gradient window
    alpha_min: float = 0.0          # tail-hit gradients: never below TAIL_CLAMP
    alpha_max: float = 1.0          # tail-hit gradients: never above 1 - TAIL_CLAMP
    t_decode_ms: float = 40.0       # initial EWMA values
    t_fetch_ms: float = 140.0
    ewma_weight: float = 0.1        # weight of a new latency observation
    gradient: Literal["ghost", "per_byte", "paper"] = "ghost"   # see the module docstring
    ghost: float = 0.10             # ghost bytes per tier, fraction of C (gradient ghost)
    ghost_step: float = 0.05        # largest alpha move per window (gradient ghost)
    ghost_events: int = 64          # ghost hits that close a window early (gradient ghost)

    def validate(self) -> None:
        if not 0.0 <= self.alpha_min <= self.alpha_max <= 1.0:
            raise ValueError("need 0 <= alpha_min <= alpha_max <= 1")
        if not self.alpha_min <= self.alpha <= self.alpha_max:
            raise ValueError("alpha must lie in [alpha_min, alpha_max]")
        if self.step <= 0 or self.window < 1:
            raise ValueError("step must be > 0 and window >= 1")
        if self.t_decode_ms < 0 or self.t_fetch_ms < 0 or not 0 < self.ewma_weight <= 1:
            raise ValueError("latencies must be >= 0 and 0 < ewma_weight <= 1")
        if self.gradient not in ("ghost", "per_byte", "paper"):
            raise ValueError(f"unknown gradient {self.gradient!r}; choose ghost, per_byte or paper")
        if not 0.0 < self.ghost <= 4.0 or not 0.0 < self.ghost_step <= 1.0 or self.ghost_events < 1:
            raise ValueError("need 0 < ghost <= 4, 0 < ghost_step <= 1 and ghost_events >= 1")

    @property
    def uses_ghosts(self) -> bool:
        """Whether the tiers must keep ghost lists for this tuner."""
        return self.gradient == "ghost"


class LatencyEstimates:
    """T_decode and T_fetch EWMAs, starting at the configured values; the first observation of
    each replaces its start. The tuner's own (it prices ghost hits with them); a cache without a
    tuner keeps these alone, so a serving worker has one set of averages either way."""

    def __init__(self, config: TunerConfig | None = None) -> None:
        self.config = config or TunerConfig()
        self.t_decode = self.config.t_decode_ms
        self.t_fetch = self.config.t_fetch_ms
        self.decodes_seen = self.fetches_seen = 0

    def observe_decode(self, ms: float) -> None:
        """Feed one observed decode latency into the T_decode EWMA (the first replaces the start value)."""
        w = self.config.ewma_weight if self.decodes_seen else 1.0
        self.decodes_seen += 1
        self.t_decode = (1 - w) * self.t_decode + w * ms

    def observe_fetch(self, ms: float) -> None:
        """Feed one observed object-store fetch latency into the T_fetch EWMA (the first replaces the start)."""
        w = self.config.ewma_weight if self.fetches_seen else 1.0
        self.fetches_seen += 1
        self.t_fetch = (1 - w) * self.t_fetch + w * ms


class MarginalHitTuner(LatencyEstimates):
    """Per-cache window counters, latency EWMAs and the alpha they imply.

    Not thread-safe on its own: the owning cache calls it under its lock.
    """

    def __init__(self, config: TunerConfig | None = None) -> None:
        super().__init__(config)
        try:
            self.config.validate()
        except ValueError as exc:
            raise ConfigError(f"tuner: {exc}") from None
        self.alpha = self.config.alpha
        self.history: list[tuple[float, float]] = []   # (gradient, alpha after the step)
        # `auto` promotion threshold the ghost lists chose (cache/promotion.py); eager while the
        # cache fills (free bytes cost nothing) until a window prices them
        self.promote = AUTO_EAGER if self.config.uses_ghosts else AUTO_FALLBACK
        self._reset()

    def _reset(self) -> None:
        self.requests = self.image_misses = self.full_misses = 0
        self.image_tail_hits = self.latent_tail_hits = 0
        self.image_ghost_misses = self.image_ghost_latents = self.latent_ghost_misses = 0
        self.early_hits = 0      # hits one promotion threshold decodes and the other serves as images

    def record(self, outcome: str, tail_hit: bool) -> None:
        """Count one lookup: outcome 'image' | 'latent' | 'miss'; tail_hit if served from a tail."""
        self.requests += 1
        if outcome == "image":
            self.image_tail_hits += tail_hit
            return
        self.image_misses += 1
        if outcome == "latent":
            self.latent_tail_hits += tail_hit
        else:
            self.full_misses += 1

    def record_ghost(self, tier: str, outcome: str) -> None:
        """Count one lookup found in the ghost list of `tier` ('image' | 'latent') that ended
        as `outcome`; only those a larger tier would have served better count."""
        if tier == "image" and outcome == "miss":
            self.image_ghost_misses += 1
        elif tier == "image" and outcome == "latent":
            self.image_ghost_latents += 1
        elif tier == "latent" and outcome == "miss":
            self.latent_ghost_misses += 1

    def due(self) -> bool:
        """True once a full window of requests has been recorded."""
        c = self.config
        ghost_hits = self.image_ghost_misses + self.image_ghost_latents + self.latent_ghost_misses
        return window_due(self.requests, ghost_hits, c.window,
                          c.ghost_events, c.uses_ghosts)

    def gradient(self) -> float:
        """D of the counters recorded so far in this window (ghost: normalised, in [-1, 1])."""
        if self.config.uses_ghosts:
            return ghost_gradient(self.image_ghost_misses, self.image_ghost_latents, self.latent_ghost_misses,
                                  self.t_decode, self.t_fetch)
        return marginal_gradient(self.requests, self.image_misses, self.full_misses,
                                 self.image_tail_hits, self.latent_tail_hits, self.t_decode, self.t_fetch,
                                 self.alpha, self.config.gradient == "per_byte")

    def step(self, early_bytes: int = 0, ghost_bytes: int = 0) -> float:
        """Close the window: move alpha against D (ghost: also choose `promote` from the early
        hits, the cache's `early_bytes` and its `ghost_bytes`), reset the counters, return alpha."""
        c = self.config
        d = self.gradient()
        if c.uses_ghosts:
            self.alpha = ghost_alpha(self.alpha, d, c.ghost_step, c.alpha_min, c.alpha_max)
            saving = sum(ghost_savings(self.image_ghost_misses, self.image_ghost_latents,
                                       self.latent_ghost_misses, self.t_decode, self.t_fetch))
            self.promote = tuned_threshold(self.early_hits, saving, self.t_decode, early_bytes, ghost_bytes)
        else:
            self.alpha = next_alpha(self.alpha, d, c.step, c.alpha_min, c.alpha_max)
        self.history.append((d, self.alpha))
        self._reset()
        return self.alpha
