"""Compaction while a job commits: after every `every` committed batches one compaction runs in a
background thread (never two at once), so that lookups during a long job meet a bounded number
of unfolded batch objects, not every batch the job committed so far.

A compaction that fails is logged and the job goes on: the batches stay visible as batch
objects, and the next compaction (at the latest the job's final one) folds them.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from lbdask.archive.store import Archive


class PeriodicCompactor:
    """Counts a job's committed batches and compacts `arc` in the background every `every` of
    them (0: never; the job compacts at its end anyway). Use as a context manager: leaving it
    waits for the compaction in flight, so that the job's final compaction runs alone."""

    def __init__(self, arc: Archive, every: int, log: Callable[[str], None]) -> None:
        self.arc, self.every, self.log = arc, every, log
        self.runs = 0  # compactions started
        self._since = 0  # batches committed since the last one started
        self._thread: threading.Thread | None = None

    def committed(self, batches: int = 1) -> None:
        """`batches` more batches were committed (called from the job's driver thread)."""
        self._since += batches
        if not self.every or self._since < self.every or (self._thread is not None and self._thread.is_alive()):
            return
        self._since = 0
        self.runs += 1
        self._thread = threading.Thread(target=self._compact, name="lbdask-compact", daemon=True)
        self._thread.start()

    def _compact(self) -> None:
        try:
            done = self.arc.compact()
        except Exception as exc:  # noqa: BLE001 - not fatal: the final compaction folds what is left
            self.log(f"compaction during the job failed (the job goes on): {type(exc).__name__}: {exc}")
            return
        self.log(f"compacted {done['batches']} batch(es) during the job (catalog generation {done['generation']})")

    def wait(self) -> None:
        """Wait for the compaction in flight, if any."""
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.wait()
