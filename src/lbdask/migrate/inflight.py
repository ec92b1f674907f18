"""How many source pixels a migration keeps in flight, derived from the workers' memory.

A batch chain holds its images from `read-png` until `write-shard` commits them: the PNG
bytes, the decoded pixels, the padded stack handed to the encoder, the latents and the
measuring decode. The window of `inflight_batches_per_thread` batches bounds their
number, not their pixels: 4 batches of 8 images of 64 MP hold ~30 GB. So the batches in
flight get `BATCH_SHARE` of the memory each worker is planned for: the smaller of its
Dask memory limit and the job's `memory_target` (configs/jobs.yaml), because the limit
alone is the machine's memory on a local cluster, far above what one model call (admitted
within `MODEL_SHARE`, src/lbdask/models/memory_budget.py) and its batches need. The plan cuts
batches of large images smaller (one image per batch when it must; small images batch as
before) and the driver submits a batch only while the pixels in flight fit, first in
first out - a batch above the whole budget runs alone rather than never.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from distributed import Client, Future, as_completed

from lbdask.models.memory_budget import admits

T = TypeVar("T")

#: Share of a worker's planned memory the batches in flight may hold; the model calls hold
#: 0.6 (MODEL_SHARE), the remaining 0.15 is the worker itself, Dask and the shards.
BATCH_SHARE = 0.25
#: Bytes a batch in flight holds per padded pixel outside the model call, rounded up: PNG
#: bytes (up to ~3 for noisy photos), decoded uint8 RGB (3), the padded stack (3), the
#: latent and its dequantised copy (TAEF2: 32 float32 channels per 8 x 8 px, 2 + 2) and
#: the measuring decode (3).
BATCH_BYTES_PER_PIXEL = 16


@dataclass(frozen=True)
class PixelBudget:
    """Pixels the batches may hold: `batch` per batch, `total` in flight (None: no bound)."""

    batch: int | None
    total: int | None


def worker_pixels(memory_limit: int | None, target: int | None = None) -> int | None:
    """Pixels one worker's batches in flight may hold: `BATCH_SHARE` of the smaller of its
    memory limit and the job's memory target (None: neither set, no bound)."""
    planned = min((m for m in (memory_limit, target) if m), default=None)
    return int(planned * BATCH_SHARE) // BATCH_BYTES_PER_PIXEL if planned else None


def pixel_budget(workers: Iterable[Mapping[str, Any]], batches_per_thread: int,
                 target: int | None = None) -> PixelBudget:
    """The budget of a cluster from its workers' `memory_limit` and `nthreads` (the values of
    `Client.scheduler_info(n_workers=-1)["workers"]`, see `cluster_budget`) and the job's
    memory `target` per worker.

    In flight: the sum of the workers' shares. Per batch: the smallest worker's share
    divided by the batches it may hold at once (its threads x `batches_per_thread`), so a
    worker holding its share of the window stays inside its own budget.
    """
    shares = [(worker_pixels(w.get("memory_limit"), target), max(1, w.get("nthreads", 1)) * batches_per_thread)
              for w in workers]
    if not shares or any(pixels is None for pixels, _ in shares):
        return PixelBudget(None, None)
    return PixelBudget(max(1, min(pixels // n for pixels, n in shares)), sum(pixels for pixels, _ in shares))


def cluster_budget(client: Client, batches_per_thread: int, target: int | None = None) -> PixelBudget:
    """`pixel_budget` of every worker of `client`'s cluster: `n_workers=-1` asks for all of
    them (the distributed releases of 2025 to mid-2026 return five by default, so a large
    cluster would be planned as five workers)."""
    return pixel_budget(client.scheduler_info(n_workers=-1)["workers"].values(), batches_per_thread, target)


class PixelWindow:
    """Admits batches in order while at most `max_batches` and `max_pixels` are in flight.

    The next batch waits for earlier ones to finish (no overtaking); when nothing is in
    flight any batch is admitted, so a batch above the whole budget runs alone.
    """

    def __init__(self, max_batches: int, max_pixels: int | None):
        self.max_batches, self.max_pixels = max_batches, max_pixels
        self.batches = 0
        self.pixels = 0

    def admits(self, pixels: int) -> bool:
        """Whether a batch of `pixels` may start now."""
        return admits(self.batches, self.max_batches, self.pixels, pixels, self.max_pixels)

    def start(self, pixels: int) -> None:
        self.batches += 1
        self.pixels += pixels

    def finish(self, pixels: int) -> None:
        self.batches -= 1
        self.pixels -= pixels


def run_windowed(items: Iterable[T], pixels: Callable[[T], int], submit: Callable[[T], Future],
                 on_result: Callable[[Any], None], window: PixelWindow) -> None:
    """Submit `items` in order as `window` admits them; hand each result to `on_result` as
    it completes, release it, and admit the next ones."""
    pending = deque(items)
    running = as_completed()
    held: dict[str, int] = {}

    def fill() -> None:
        while pending and window.admits(px := pixels(pending[0])):
            item = pending.popleft()
            window.start(px)
            future = submit(item)
            held[future.key] = px
            running.add(future)

    fill()
    for future in running:
        on_result(future.result())
        window.finish(held.pop(future.key))
        future.release()
        fill()
