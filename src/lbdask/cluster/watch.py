"""Watch the cluster while a job runs: workers lost (killed, crashed, restarted by the nanny
for memory), tasks Dask had to run again, and the peak memory of any worker.

A job that survived two memory restarts looks like a clean job in its counts; these figures
say what it cost. Losses and retries come from the scheduler's own `remove-worker` events
(topic "all", streamed to this client: nothing needs installing on the scheduler); memory is
sampled from the worker metrics of `Client.scheduler_info` (process RSS, as the dashboard
shows it) by a daemon thread.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from distributed import Client

#: Seconds between memory samples (worker heartbeats refresh the metrics about as often).
SAMPLE_SECONDS = 1.0


class ClusterWatch:
    """Counts worker losses and retried tasks of `prefixes`, and samples peak worker memory."""

    def __init__(self, client: Client, prefixes: Iterable[str], interval: float = SAMPLE_SECONDS) -> None:
        self.client = client
        self.prefixes = tuple(prefixes)
        self.interval = interval
        self.workers_lost: list[str] = []
        self.retried: set[str] = set()
        self.peak_memory = 0
        self.peak_fraction: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="lbdask-cluster-watch", daemon=True)

    def __enter__(self) -> ClusterWatch:
        self.client.subscribe_topic("all", self._on_event)
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.client.unsubscribe_topic("all")

    def _ours(self, key: object) -> bool:
        return str(key).startswith(self.prefixes)

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A scheduler event: a removed worker's running and lost tasks are run again."""
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        keys = {*msg.get("processing-tasks", ()), *msg.get("lost-computed-tasks", ())}
        with self._lock:
            self.workers_lost.append(str(msg.get("worker")))
            self.retried.update(str(k) for k in keys if self._ours(k))

    def sample(self) -> None:
        """Record the largest worker memory seen now (and its share of that worker's limit)."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}).values()
        for w in workers:
            memory = int((w.get("metrics") or {}).get("memory") or 0)
            with self._lock:
                if memory > self.peak_memory:
                    self.peak_memory = memory
                    limit = w.get("memory_limit") or 0
                    self.peak_fraction = memory / limit if limit else None

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - the scheduler may be gone at shutdown; the job decides
                if self.client.status not in ("running", "connecting"):
                    return

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for the job statistics."""
        with self._lock:
            return {"workers_lost": len(self.workers_lost), "tasks_retried": len(self.retried),
                    "peak_worker_memory": self.peak_memory or None,
                    "peak_worker_memory_fraction": None if self.peak_fraction is None else round(self.peak_fraction, 4)}
