"""Reading what a running scheduler's dashboard shows: its spans and its HTTP pages.

Used by tests/system/test_migrate_observability.py and tests/system/test_retier_serving.py. The scheduler
cannot import this module: `span_view` travels to it by value (run_on_scheduler).
"""
from __future__ import annotations

import sys
import urllib.request

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def span_view(dask_scheduler) -> dict[str, dict]:
    """Per span (name joined by '/'): its task prefixes and fine-metric keys (run on the scheduler)."""
    return {
        "/".join(sp.name): {
            "prefixes": sorted({tg.prefix.name for sp2 in sp.traverse_spans() for tg in sp2.groups}),
            "metrics": sorted("/".join(map(str, k)) for k, v in sp.cumulative_worker_metrics.items() if v > 0),
        }
        for sp in dask_scheduler.extensions["spans"].spans.values()
    }


def get_page(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, text) of one page of the HTTP server on `port` (loopback)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
