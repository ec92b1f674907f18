"""The model executor of one worker: one thread owns the model, same-shape decodes run batched.

Requests queue from any thread; the executor takes the oldest one and every other queued
request of the same latent shape and output size (up to `max_batch`) into one model call,
so a burst of misses on one worker costs fewer forward passes. Its `depth` (waiting plus
running) is the executor's own; the load spillover reads is the serving worker's wider count
(serve.worker.ServingWorker.depth), which includes these. A request whose waiter was cancelled
before its batch starts is dropped (concurrent.futures' set_running_or_notify_cancel).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from lbdask.latent.decode import decode_latent

#: Yields the loaded model for exclusive use (lbdask.models.resident.ResidentModel.use fits).
ModelContext = Callable[[], contextlib.AbstractContextManager[Any]]


def auto_max_batch(max_batch: int) -> int:
    """`max_batch` 0 means: 1 on CPU (the canonical batch-of-one decode, byte-equal to `lbdask read`,
    and the fastest CPU path), 8 on CUDA (throughput; a batched decode may differ from the
    batch-of-one bytes by the rounding of a pixel)."""
    if max_batch:
        return max_batch
    import torch

    return 8 if torch.cuda.is_available() else 1


class BatchingDecoder:
    """Latents (C, h, w) float32 -> RGB (H, W, 3) uint8 on one executor thread."""

    def __init__(self, model: ModelContext, max_batch: int = 8) -> None:
        self._model = model
        self.max_batch = max_batch
        self._queue: list[tuple[np.ndarray, tuple[int, int], Future]] = []
        self._cond = threading.Condition()
        self._running = 0
        self._closed = False
        self.batches = 0   # model calls made
        self.decoded = 0   # latents decoded
        self._thread = threading.Thread(target=self._loop, name="lbdask-decoder", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Decodes waiting or running right now."""
        with self._cond:
            return len(self._queue) + self._running

    def submit(self, z: np.ndarray, size: tuple[int, int]) -> Future:
        """Queue one decode; the future resolves to the RGB image cropped to `size` = (h, w)."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._queue.append((z, size, fut))
            self._cond.notify()
        return fut

    def close(self) -> None:
        """Stop after the running batch; queued decodes fail with RuntimeError."""
        with self._cond:
            self._closed = True
            left, self._queue = self._queue, []
            self._cond.notify()
        for _, _, fut in left:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RuntimeError("serving was removed from this worker"))
        self._thread.join(timeout=30)

    def _take_batch(self) -> list[tuple[np.ndarray, tuple[int, int], Future]]:
        first = self._queue[0]
        shape = (first[0].shape, first[1])
        batch = [r for r in self._queue if (r[0].shape, r[1]) == shape][:self.max_batch]
        taken = {id(r) for r in batch}
        self._queue = [r for r in self._queue if id(r) not in taken]
        return batch

    @staticmethod
    def _decode(model: Any, batch: list[tuple[np.ndarray, tuple[int, int], Future]]) -> Any:
        """One request: the canonical batch-of-one decode (bytes equal `lbdask read`); several: one call."""
        if len(batch) == 1:
            return [decode_latent(model, batch[0][0], batch[0][1])]
        return model.decode(np.stack([r[0] for r in batch]), size=batch[0][1])

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = [r for r in self._take_batch() if r[2].set_running_or_notify_cancel()]
                self._running = len(batch)
                if not batch:
                    continue
            try:
                with self._model() as model:
                    rgb = self._decode(model, batch)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for _, _, fut in batch:
                    fut.set_exception(exc)
            else:
                self.batches += 1  # counted before the waiters wake, so their stats include this batch
                self.decoded += len(batch)
                for i, (_, _, fut) in enumerate(batch):
                    fut.set_result(rgb[i])
            finally:
                with self._cond:
                    self._running = 0
