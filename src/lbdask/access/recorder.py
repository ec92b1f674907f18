"""Access statistics of one serving worker: count every read, flush them to the archive.

Each archive a worker serves gets one `lbdask.access.log.AccessLog`; a background thread
flushes them every `access_flush_s` seconds (one object per archive per flush, never on the
event loop) and folds the archive's logs (`compact_access`) every `access_compact_every`
flushes, keeping `access_retention_days` days of per-day read buckets (src/lbdask/access/days.py),
so the store does not grow without bound. Plugin teardown (and so a clean worker
shutdown) flushes once more; a killed worker loses at most its last interval.
"""
from __future__ import annotations

import json
import logging
import re
import threading

from lbdask.access.log import AccessLog, compact_access
from lbdask.archive.creation import require_archive
from lbdask.storage import open_location

logger = logging.getLogger(__name__)


def writer_id(address: str) -> str:
    """A log writer name from a worker address (`tcp://10.0.0.1:4000` -> `tcp_10.0.0.1_4000`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", address).strip("_.-")[:120] or "worker"


class AccessRecorder:
    """Per-archive AccessLogs of one worker, flushed by a background thread."""

    def __init__(self, address: str, flush_s: float, compact_every: int, retention_days: int) -> None:
        self.writer = writer_id(address)
        self.flush_s, self.compact_every, self.retention_days = flush_s, compact_every, retention_days
        self._logs: dict[str, AccessLog] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flushes = 0
        self.flushed_ids = 0   # ids written over the worker's life (a Prometheus metric of serving)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lbdask-access", daemon=True)
        self._thread.start()

    def record(self, dest: str, options: dict | None, image_id: str) -> None:
        """Count one read of `image_id` in archive `dest` (in memory; cheap)."""
        ident = dest + json.dumps(options or {}, sort_keys=True)
        with self._lock:
            log = self._logs.get(ident)
            if log is None:
                log = self._logs[ident] = AccessLog(open_location(dest, options), self.writer)
        log.add(image_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def flush(self) -> int:
        """Write every archive's pending counts; a failure is logged and the counts stay pending."""
        with self._flush_lock:
            with self._lock:
                logs = list(self._logs.values())
            self._flushes += 1
            compact = self.compact_every > 0 and self._flushes % self.compact_every == 0
            written = 0
            for log in logs:
                try:
                    require_archive(log.loc)  # renamed or deleted: keep the counts, recreate no folder there
                    written += log.flush()
                    if compact:
                        compact_access(log.loc, retention_days=self.retention_days)
                except Exception as exc:  # noqa: BLE001 - the serving path must not die of a store hiccup
                    logger.warning("lbdask: access statistics of %s not written yet: %s", log.loc.url, exc)
            self.flushed_ids += written
            return written

    def close(self) -> None:
        """Stop the thread and flush what is pending (clean shutdown, plugin removal)."""
        self._stop.set()
        self._thread.join(timeout=30)  # only waits for a flush already under way
        self.flush()
