"""The dual-format cache of one node: an image tier and a latent tier sharing C bytes.

Lookup cascades image -> latent -> miss; every object lives in exactly one tier. A full
miss admits the latent with a hit counter at 0; after `promote_after` latent hits the
decoded image replaces the latent atomically. With a tuner the split alpha follows the
marginal-hit gradient, one step per window of lookups. Thread-safe: one lock per cache.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lbdask.cache.capacity import image_capacity
from lbdask.cache.promotion import AUTO_FALLBACK, early_hit, promotion_threshold
from lbdask.cache.settings import CacheConfig
from lbdask.cache.tiers import POLICIES, Entry, SegmentedTier, make_tier
from lbdask.cache.tuner import MarginalHitTuner, TunerConfig, ghost_capacity
from lbdask.errors import ConfigError

#: Which tier answered a lookup ("miss": neither).
HitTier = Literal["image", "latent", "miss"]


@dataclass(frozen=True)
class Lookup:
    """Result of one lookup: which tier answered, its value, and whether it was a tail hit."""

    outcome: HitTier
    value: Any = None
    tail_hit: bool = False


class CacheSections(Protocol):
    """What `from_settings` reads: `cache:` and `tuner:` of cache.yaml, or of serve.yaml (per worker)."""

    cache: CacheConfig
    tuner: TunerConfig


class DualFormatCache:
    """Byte-accounted image + latent tiers of one node, with optional online alpha tuning."""

    def __init__(self, capacity: int, config: CacheConfig | None = None,
                 tuner: MarginalHitTuner | None = None, alpha: float | None = None) -> None:
        self.config = config or CacheConfig()
        try:
            self.config.validate()
        except ValueError as exc:
            raise ConfigError(f"cache: {exc}") from None
        if capacity < 0:
            raise ConfigError(f"cache: capacity must be >= 0 bytes, got {capacity}")
        if self.config.policy not in POLICIES:
            raise ConfigError(f"cache: unknown policy {self.config.policy!r}; choose from {', '.join(POLICIES)}")
        self.tuner = tuner
        if alpha is None:
            alpha = tuner.alpha if tuner is not None else 0.5
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"cache: alpha must be in [0, 1], got {alpha}")
        self.capacity = capacity
        self.alpha = alpha
        self._lock = threading.Lock()
        self.counts = {"image": 0, "latent": 0, "miss": 0}
        c = self.config
        img = image_capacity(capacity, alpha)
        self.image: SegmentedTier = make_tier(c.policy, img, c.tail, c.s3fifo_small, c.s3fifo_move_after)
        self.latent: SegmentedTier = make_tier(c.policy, capacity - img, c.tail, c.s3fifo_small,
                                               c.s3fifo_move_after)
        self._ghosts = tuner is not None and tuner.config.uses_ghosts
        t_decode, t_fetch, tuned = ((tuner.t_decode, tuner.t_fetch, tuner.promote) if tuner is not None
                                    else (40.0, 140.0, AUTO_FALLBACK))
        self.promote_after = promotion_threshold(c.promote_after, t_decode, t_fetch, tuned)
        self._size_ghosts()

    @classmethod
    def from_settings(cls, capacity: int, settings: CacheSections) -> DualFormatCache:
        """The cache `cache:` and `tuner:` describe: adaptive (own tuner) or static at tuner.alpha."""
        if settings.cache.adaptive:
            return cls(capacity, settings.cache, tuner=MarginalHitTuner(settings.tuner))
        return cls(capacity, settings.cache, alpha=settings.tuner.alpha)

    def lookup(self, key: Hashable) -> Lookup:
        """Cascading lookup; a latent hit counts toward promotion (call `fill` after decoding)."""
        with self._lock:
            if self.tuner is not None and self.tuner.due():
                self._apply_alpha(self.tuner.step(self.early_bytes, 2 * self.image.ghost.capacity))
                self.promote_after = promotion_threshold(self.config.promote_after, self.tuner.t_decode,
                                                         self.tuner.t_fetch, self.tuner.promote)
            ghosts = [self.image.ghost.pop(key), self.latent.ghost.pop(key)] if self._ghosts else [False, False]
            found = self.image.get(key)
            if found is not None:
                self._count_hit(self.image, found[0])
                result = Lookup("image", found[0].value, found[1])
            else:
                found = self.latent.get(key)
                if found is not None:
                    self._count_hit(self.latent, found[0])
                    result = Lookup("latent", found[0].value, found[1])
                else:
                    result = Lookup("miss")
            self.counts[result.outcome] += 1
            if self.tuner is not None:
                for name, hit in zip(("image", "latent"), ghosts):
                    if hit:
                        self.tuner.record_ghost(name, result.outcome)
                self.tuner.record(result.outcome, result.tail_hit)
            return result

    def _count_hit(self, tier: SegmentedTier, entry: Entry) -> None:
        """One more hit on a held entry: counts early hits and the early bytes (promotion.py)."""
        was = early_hit(entry.hits)
        entry.hits += 1
        now = early_hit(entry.hits)
        tier.early_bytes += entry.extra * (now - was)
        if self.tuner is not None:
            self.tuner.early_hits += was

    @property
    def early_bytes(self) -> int:
        """What promoting every held object with an early hit at its first latent hit adds, in bytes."""
        return self.image.early_bytes + self.latent.early_bytes

    def fill(self, key: Hashable, latent: Any, image: Any, latent_size: int | None = None,
             image_size: int | None = None) -> None:
        """Hand back the fetched latent and decoded image after a latent hit or a miss.

        An uncached object is admitted to the latent tier (to the image tier when the
        latent tier cannot hold it, e.g. alpha = 1, or when the promotion threshold is 0);
        a latent with enough hits is promoted.
        Sizes default to len(value).
        """
        lat_size = len(latent) if latent_size is None else latent_size
        img_size = len(image) if image_size is None else image_size
        with self._lock:
            if key in self.image:
                return
            held = self.latent.peek(key)
            if held is not None:
                if held.hits >= self.promote_after:
                    self._admit_image(key, image, img_size, held)
                return
            extra = abs(img_size - lat_size)
            if self.promote_after == 0 and self._admit_image(key, image, img_size, extra=extra):
                return
            if self.latent.fits(lat_size):
                self.latent.insert(key, Entry(latent, lat_size, extra=extra))
            else:
                self.latent.ghost.add(key, lat_size)      # what a latent tier with room would hold
                if self.image.fits(img_size):
                    self.image.insert(key, Entry(image, img_size, extra=extra))

    def _admit_image(self, key: Hashable, image: Any, size: int, held: Entry | None = None,
                     extra: int = 0) -> bool:
        """Put the image in its tier (replacing a held latent); if it cannot fit, remember it in
        the image ghost list, which is what lets a zero-byte image tier regrow."""
        if not self.image.fits(size):
            self.image.ghost.add(key, size)
            return False
        entry = Entry(image, size, extra=extra)
        if held is not None:
            self.latent.remove(key)
            entry.hits, entry.extra = held.hits, held.extra
        self.image.insert(key, entry)
        return True

    def set_costs(self, t_decode_ms: float, t_fetch_ms: float) -> None:
        """Measured decode and fetch latencies (EWMAs): re-derive an `auto` promotion threshold."""
        with self._lock:
            tuned = self.tuner.promote if self.tuner is not None else AUTO_FALLBACK
            self.promote_after = promotion_threshold(self.config.promote_after, t_decode_ms, t_fetch_ms, tuned)

    def discard(self, key: Hashable) -> bool:
        """Forget `key` in both tiers (its object changed in the archive); True if it was held."""
        with self._lock:
            return (self.image.remove(key) is not None) | (self.latent.remove(key) is not None)

    def set_alpha(self, alpha: float) -> None:
        """Set the image fraction by hand (static configurations), evicting overflow now."""
        with self._lock:
            self._apply_alpha(alpha)

    def resize(self, capacity: int) -> None:
        """Change the total budget C, keeping alpha, evicting overflow now."""
        with self._lock:
            self.capacity = capacity
            self._size_ghosts()
            self._apply_alpha(self.alpha)

    def _size_ghosts(self) -> None:
        size = ghost_capacity(self.capacity, self.tuner.config.ghost) if self._ghosts else 0
        self.image.ghost.resize(size)
        self.latent.ghost.resize(size)

    def _apply_alpha(self, alpha: float) -> None:
        self.alpha = alpha
        img = image_capacity(self.capacity, alpha)
        self.image.resize(img)
        self.latent.resize(self.capacity - img)

    def stats(self) -> dict[str, Any]:
        """A snapshot for metrics: split, bytes per tier, outcome counts, latency EWMAs."""
        with self._lock:
            out: dict[str, Any] = {"alpha": self.alpha, "capacity": self.capacity,
                                   "image_bytes": self.image.used, "latent_bytes": self.latent.used,
                                   **{f"{k}_lookups": v for k, v in self.counts.items()}}
            if self.tuner is not None:
                out.update(t_decode_ms=self.tuner.t_decode, t_fetch_ms=self.tuner.t_fetch)
            out["promote_after"] = self.promote_after
            return out

    @property
    def used(self) -> int:
        """Bytes held in both tiers."""
        return self.image.used + self.latent.used
