"""How much memory a worker's model calls may hold at once, and the admission that keeps to it.

A model call's peak memory grows with the pixels it processes: TAEF2 holds ~1.1 KB
(encode) to ~1.5 KB (decode) of fp32 activations per pixel of one pass
(docs/benchmarks.md), and the CPU heap settings of configs/cpu_memory.yaml keep that peak
resident. Tiling caps the pixels of one pass at `max(tile_threshold, tile_size**2)`; the
whole image's float buffers (input, blended output, blend weights) stay. So the peak of
a call is known from its image size before it runs, and a worker admits calls through a
`MemoryBudget`: a call whose estimate does not fit beside the calls already running waits
(first come, first served) instead of running concurrently and getting the worker killed
by its nanny. A worker refuses to start when not even the largest single call fits.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Iterator

from lbdask.errors import ConfigError
from lbdask.models.registry import ModelSpec

#: Share of a worker's memory limit its model calls may take; the rest holds the batches'
#: pixels and PNG bytes in flight, Dask's own state, and the shards being written.
MODEL_SHARE = 0.6
#: Bytes per image pixel a call holds outside the model's activations, whatever the tiling:
#: float32 RGB input and output (12 + 12), the blend weights of a tiled call (4), and the
#: uint8 copies in and out (3 + 3), rounded up.
IMAGE_BYTES_PER_PIXEL = 36


def largest_call_pixels(spec: ModelSpec) -> int:
    """The most pixels one encode or decode pass processes: an untiled image at the
    threshold, or one tile."""
    return max(spec.tile_threshold, spec.tile_size ** 2)


def call_peak_bytes(spec: ModelSpec, pixels: int | None = None) -> int:
    """Estimated peak bytes of one call on an image of `pixels` (padded; None: the largest
    untiled image): the activations of its largest pass plus the image's own buffers."""
    largest = largest_call_pixels(spec)
    if pixels is None:
        pixels = largest
    one_pass = pixels if pixels <= spec.tile_threshold else min(pixels, spec.tile_size ** 2)
    return one_pass * spec.activation_bytes_per_pixel + pixels * IMAGE_BYTES_PER_PIXEL


def budget_bytes(memory_limit: int | None) -> int | None:
    """The bytes a worker's model calls may hold together (None: no limit set, no bound)."""
    return int(memory_limit * MODEL_SHARE) if memory_limit else None


def calls_within(memory_limit: int | None, spec: ModelSpec) -> int | None:
    """How many of the largest untiled model calls fit in `MODEL_SHARE` of `memory_limit`
    (None: no limit set, so no bound)."""
    budget = budget_bytes(memory_limit)
    return None if budget is None else budget // call_peak_bytes(spec)


def check_budget(memory_limit: int | None, spec: ModelSpec, name: str) -> None:
    """A one-line error when not even one model call fits in a worker's memory limit."""
    fits = calls_within(memory_limit, spec)
    if fits is not None and fits < 1:
        need = math.ceil(call_peak_bytes(spec) / MODEL_SHARE / 2**30 * 10) / 10  # rounded up: the advice must fit
        raise ConfigError(
            f"a worker memory limit of {memory_limit / 2**30:.1f} GiB cannot hold one {name} model call "
            f"(~{call_peak_bytes(spec) / 2**30:.1f} GiB for {largest_call_pixels(spec) / 1e6:.1f} MP): give workers "
            f">= {need:.1f} GiB or lower tile_threshold / tile_size in configs/models.yaml")


def admits(running: int, max_running: int, in_use: int, amount: int, capacity: int | None) -> bool:
    """Whether one more piece of work of `amount` may start beside `running` ones holding
    `in_use`: at most `max_running` at once and `capacity` in all (None: no bound), but
    always when nothing runs, so work above the whole capacity runs alone rather than never."""
    if running == 0:
        return True
    if running >= max_running:
        return False
    return capacity is None or in_use + amount <= capacity


class MemoryBudget:
    """Admits concurrent model calls while their estimated peaks fit in `capacity` bytes.

    At most `max_calls` run at once; waiting calls are admitted in arrival order (a large
    call is not overtaken forever by small ones). A call estimated above the whole
    capacity still runs - alone - rather than never: nothing waits on a call that cannot
    come, so admission cannot deadlock.
    """

    def __init__(self, capacity: int | None, max_calls: int = 1):
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self.capacity, self.max_calls = capacity, max_calls
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.in_use = 0   # estimated bytes of the calls running now
        self.running = 0  # calls running now

    def _fits(self, nbytes: int) -> bool:
        return admits(self.running, self.max_calls, self.in_use, nbytes, self.capacity)

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Wait until a call of `nbytes` fits, hold them while the block runs, release after."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or not self._fits(nbytes):
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the line, wake the next
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self.in_use += nbytes
            self.running += 1
            self._cond.notify_all()  # the next in line may fit beside this one
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= nbytes
                self.running -= 1
                self._cond.notify_all()
