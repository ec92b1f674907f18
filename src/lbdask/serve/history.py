"""Serving's recent history on the scheduler, from what the workers' heartbeats carry.

Every worker's heartbeat (about once a second) carries its serving counters and read-latency
histograms (serve.metrics.heartbeat), so the scheduler already holds them: sampling them
every couple of seconds costs no message. Each sample adds the histogram counts the workers
gained since the last one (a worker that restarted counts from zero again) and turns the last
`window_s` seconds of them into one row: P50/P95/P99 per tier, tier fractions, reads per second.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

from lbdask.serve.latency import TIERS, Counts, add, quantile
from lbdask.serve.metrics import HEARTBEAT_KEY, measured

PERCENTILES = (50, 95, 99)
#: the columns of one history row
COLUMNS = ("time", "rate", *(f"{t}_p{p}" for t in TIERS for p in PERCENTILES), *(f"{t}_frac" for t in TIERS))


class ServingHistory:
    """Per-worker views and a bounded history of cluster-wide rows (`keep` samples)."""

    def __init__(self, scheduler: Any, keep: int = 900, window_s: float = 10.0) -> None:
        self.scheduler, self.window_s = scheduler, window_s
        self.rows: deque[dict[str, Any]] = deque(maxlen=keep)
        self._seen: dict[str, dict[str, Counts]] | None = None   # per worker: its counts at the last sample
        self._totals: dict[str, Counts] = {}                       # every read counted since the first sample
        self._marks: deque[tuple[float, dict[str, Counts]]] = deque()

    def views(self) -> dict[str, dict[str, Any]]:
        """worker address -> what its last heartbeat carried (workers that do not serve left out)."""
        return {addr: ws.metrics[HEARTBEAT_KEY] for addr, ws in sorted(self.scheduler.workers.items())
                if HEARTBEAT_KEY in ws.metrics}

    def sample(self, now: float | None = None) -> dict[str, Any]:
        """Take one sample, append its row and return it."""
        now = time.time() if now is None else now
        self._advance({addr: view["read_seconds"]["counts"] for addr, view in self.views().items()})
        self._marks.append((now, {t: list(c) for t, c in self._totals.items()}))
        while len(self._marks) > 1 and now - self._marks[1][0] >= self.window_s:
            self._marks.popleft()
        since, base = self._marks[0]
        window = {t: list(c) for t, c in self._totals.items()}
        add(window, base, sign=-1)
        reads = {t: sum(window.get(t, ())) for t in TIERS}
        total = sum(reads.values())
        row: dict[str, Any] = {"time": now * 1000, "rate": total / (now - since) if now > since else 0.0}
        for tier in TIERS:
            for p in PERCENTILES:
                q = quantile(window.get(tier, []), p / 100)
                row[f"{tier}_p{p}"] = None if q is None else q * 1000   # ms; None: no read of that tier
            row[f"{tier}_frac"] = reads[tier] / total if total else 0.0
        self.rows.append(row)
        return row

    def _advance(self, current: dict[str, dict[str, Counts]]) -> None:
        if self._seen is not None:   # the first sample is the baseline
            for addr, counts in current.items():
                before = self._seen.get(addr, {})
                for tier, c in counts.items():
                    old = before.get(tier)
                    restarted = old is None or any(n < o for n, o in zip(c, old))
                    add(self._totals, {tier: c})
                    if not restarted:
                        add(self._totals, {tier: old}, sign=-1)
        self._seen = current

    def columns(self) -> dict[str, list]:
        """The history as columns (a Bokeh ColumnDataSource's data)."""
        return {c: [row[c] for row in self.rows] for c in COLUMNS}


def worker_columns(views: dict[str, dict[str, Any]]) -> dict[str, list]:
    """One row per worker for the page's bars and table; latencies never measured show "–"."""
    shown = {addr: measured(v) for addr, v in views.items()}

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}"
    return {
        "worker": list(shown),
        **{k: [v[k] for v in shown.values()] for k in
           ("requests", "image_hits", "latent_hits", "misses", "errors", "alpha", "queue_depth", "spillovers",
            "coalesced")},
        "t_decode": [ms(v["t_decode_ms"]) for v in shown.values()],
        "t_fetch": [ms(v["t_fetch_ms"]) for v in shown.values()],
    }
