"""How many model calls a worker's memory holds at once, from its memory limit.

A model call's peak memory grows with the pixels it processes: TAEF2 holds ~1.1 KB
(encode) to ~1.5 KB (decode) of fp32 activations per pixel (docs/benchmarks.md), and the
CPU heap settings of configs/cpu_memory.yaml keep that peak resident. Tiling caps the
pixels of one call at `max(tile_threshold, tile_size**2)`, so the peak of one call is
known before any image is seen; a worker then admits only as many calls at once as fit
in its budget - one, under the resident model's lock - and refuses to start when not
even one fits, instead of being restarted by its nanny image after image.
"""
from __future__ import annotations

from ..errors import ConfigError
from .registry import ModelSpec

#: Share of a worker's memory limit its model calls may take; the rest holds the batches'
#: pixels and PNG bytes in flight, Dask's own state, and the shards being written.
MODEL_SHARE = 0.6


def largest_call_pixels(spec: ModelSpec) -> int:
    """The most pixels one encode or decode call processes: an untiled image at the
    threshold, or one tile."""
    return max(spec.tile_threshold, spec.tile_size ** 2)


def call_peak_bytes(spec: ModelSpec) -> int:
    """Estimated peak bytes of activations of the largest model call (one image)."""
    return largest_call_pixels(spec) * spec.activation_bytes_per_pixel


def calls_within(memory_limit: int | None, spec: ModelSpec) -> int | None:
    """How many of the largest model calls fit in `MODEL_SHARE` of `memory_limit`
    (None: no limit set, so no bound)."""
    if not memory_limit:
        return None
    return int(memory_limit * MODEL_SHARE) // call_peak_bytes(spec)


def check_budget(memory_limit: int | None, spec: ModelSpec, name: str) -> None:
    """A one-line error when not even one model call fits in a worker's memory limit."""
    fits = calls_within(memory_limit, spec)
    if fits is not None and fits < 1:
        need = call_peak_bytes(spec) / MODEL_SHARE / 2**30
        raise ConfigError(
            f"a worker memory limit of {memory_limit / 2**30:.1f} GiB cannot hold one {name} model call "
            f"(~{call_peak_bytes(spec) / 2**30:.1f} GiB for {largest_call_pixels(spec) / 1e6:.1f} MP): give workers "
            f">= {need:.1f} GiB or lower tile_threshold / tile_size in configs/models.yaml")
