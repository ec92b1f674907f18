"""A page on the Dask dashboard summarising every worker's serving runtime.

A scheduler plugin adds `/lbdask/serving` (HTML) and `/lbdask/serving.json` to the
scheduler's HTTP server; each page view asks the workers for their `lbdask_stats`
directly, so nothing is collected while nobody looks. `remove_pages` takes the routes out
again when the serving runtime is uninstalled (Dask's plugin removal calls no hook on the
plugin, and tornado has no public call to drop routes, so the rules added are remembered).
"""
from __future__ import annotations

import asyncio
import html
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.http.utils import RequestHandler

ROUTE = "/lbdask/serving"
PLUGIN_NAME = "lbdask-serve-dashboard"
COLUMNS = ("requests", "image_hits", "latent_hits", "misses", "alpha", "queue_depth", "t_decode_ms", "t_fetch_ms",
           "spillovers", "spilled_in", "coalesced", "errors", "image_bytes", "latent_bytes")


async def collect(scheduler: Any) -> dict[str, dict[str, Any]]:
    """worker address -> its runtime's stats (workers without a runtime are left out)."""
    async def one(addr: str) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(scheduler.rpc(addr).lbdask_stats(), timeout=2.0)
        except Exception:  # noqa: BLE001 - a worker without the runtime, or one going away
            return None
    addrs = sorted(scheduler.workers)
    answers = await asyncio.gather(*(one(a) for a in addrs))
    return {a: s for a, s in zip(addrs, answers) if s is not None}


def render(stats: dict[str, dict[str, Any]]) -> str:
    """The HTML page: one row per worker, one totals row."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    head = "".join(f"<th>{c}</th>" for c in ("worker", *COLUMNS))
    rows = "".join(
        "<tr><td>" + html.escape(addr) + "</td>" + "".join(f"<td>{cell(s[c])}</td>" for c in COLUMNS) + "</tr>"
        for addr, s in stats.items())
    total_requests = sum(s["requests"] for s in stats.values())
    tiers = {t: sum(s[t] for s in stats.values()) for t in ("image_hits", "latent_hits", "misses")}
    looked = max(1, sum(tiers.values()))
    summary = (f"{len(stats)} serving worker(s), {total_requests} requests; "
               + ", ".join(f"{t} {100 * n / looked:.1f}%" for t, n in tiers.items()))
    return ("<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
            "<title>lbdask serving</title><style>body{font-family:sans-serif;margin:1.5em;font-size:13px}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
            "th{background:#eef}td:first-child{text-align:left}</style></head><body>"
            f"<h2>lbdask serving</h2><p>{html.escape(summary)}</p>"
            f"<table><tr>{head}</tr>{rows}</table></body></html>")


class ServingPage(RequestHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(render(await collect(self.server)))


class ServingJSON(RequestHandler):
    async def get(self) -> None:
        self.write({"workers": await collect(self.server)})


class ServingDashboard(SchedulerPlugin):
    """Adds the serving pages to a running scheduler's HTTP server (idempotent)."""

    name = PLUGIN_NAME
    idempotent = True

    async def start(self, scheduler: Any) -> None:
        app = getattr(scheduler, "http_application", None)
        if app is None or getattr(app, "_lbdask_serving", None):
            return
        routers = _routers(app)
        before = [list(r.rules) for r in routers]
        app.add_handlers(r".*", [(ROUTE, ServingPage, {"dask_server": scheduler}),
                                 (ROUTE + ".json", ServingJSON, {"dask_server": scheduler})])
        app._lbdask_serving = [[rule for rule in r.rules if rule not in old] for r, old in zip(routers, before)]


def remove_pages(dask_scheduler: Any) -> bool:
    """Drop the serving routes from the scheduler's HTTP server and the plugin that added them
    (run on the scheduler); afterwards the pages answer 404 and a later install adds them
    again. True when there were routes to drop."""
    if PLUGIN_NAME in dask_scheduler.plugins:
        dask_scheduler.remove_plugin(PLUGIN_NAME)
    app = getattr(dask_scheduler, "http_application", None)
    added = getattr(app, "_lbdask_serving", None)
    if not added:
        return False
    for router, ours in zip(_routers(app), added):
        router.rules = [rule for rule in router.rules if rule not in ours]
    app._lbdask_serving = None
    return True


def _routers(app: Any) -> list[Any]:
    """The tornado routers `add_handlers` appends to (the wildcard one only with a default host)."""
    return [app.default_router, app.wildcard_router]
