"""The serving page on the Dask dashboard and the cluster's serving series on the scheduler's `/metrics`.

A scheduler plugin adds `/lbdask/serving` (a Bokeh document, serve.dashboard_plots),
`/lbdask/serving.json` (every worker's stats, asked of the workers when requested) and the
two routes the page polls: `/history.json` (serve.history, sampled every 2 s from the
workers' heartbeats) and `/workers.json` (the same heartbeats, one row per worker). It also
registers a collector of the heartbeats in the scheduler's Prometheus registry
(`lbdask_cluster_serve_*`, label `worker`), so a scrape sends no message to any worker.
`remove_pages` takes all of it out again when serving is uninstalled (Dask's
plugin removal calls no hook on the plugin, and tornado has no public call to drop routes,
so the rules added are remembered).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import prometheus_client
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.http.utils import RequestHandler
from tornado.ioloop import PeriodicCallback

from lbdask.serve import metrics
from lbdask.serve.dashboard_plots import page
from lbdask.serve.history import ServingHistory, worker_columns

ROUTE = "/lbdask/serving"
PLUGIN_NAME = "lbdask-serve-dashboard"
SAMPLE_MS = 2000
logger = logging.getLogger(__name__)


async def collect(scheduler: Any) -> dict[str, dict[str, Any]]:
    """worker address -> its serving stats (workers that do not serve are left out)."""
    async def one(addr: str) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(scheduler.rpc(addr).lbdask_stats(), timeout=2.0)
        except Exception:  # noqa: BLE001 - a worker that does not serve, or one going away
            return None
    addrs = sorted(scheduler.workers)
    answers = await asyncio.gather(*(one(a) for a in addrs))
    return {a: s for a, s in zip(addrs, answers) if s is not None}


class ServingPage(RequestHandler):
    async def get(self) -> None:
        history: ServingHistory = self.extra["history"]
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(page(history.columns(), worker_columns(await collect(self.server)),
                        (ROUTE + "/history.json", ROUTE + "/workers.json"), SAMPLE_MS))


class ServingJSON(RequestHandler):
    async def get(self) -> None:
        self.write({"workers": {a: metrics.measured(s) for a, s in (await collect(self.server)).items()}})


class HistoryJSON(RequestHandler):
    def get(self) -> None:
        self.write(self.extra["history"].columns())


class WorkersJSON(RequestHandler):
    def get(self) -> None:
        self.write(worker_columns(self.extra["history"].views()))


class ServingDashboard(SchedulerPlugin):
    """Adds the serving pages, the history sampling and the `/metrics` series to a running scheduler
    (idempotent). A second scheduler in one process with this plugin gets no `/metrics` series
    (one Prometheus registry per process); its pages work."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self._sampler: PeriodicCallback | None = None
        self._collector: metrics.Collector | None = None

    async def start(self, scheduler: Any) -> None:
        app = getattr(scheduler, "http_application", None)
        if app is None or getattr(app, "_lbdask_serving", None):
            return
        history = ServingHistory(scheduler)
        self._sampler = PeriodicCallback(history.sample, SAMPLE_MS)
        self._sampler.start()
        self._collector = metrics.Collector(metrics.CLUSTER_PREFIX, history.views)
        try:
            prometheus_client.REGISTRY.register(self._collector)
        except ValueError:   # another scheduler of this process registered them
            logger.warning("lbdask serving series already registered in this process; not on this scheduler")
            self._collector = None
        routers = _routers(app)
        before = [list(r.rules) for r in routers]
        args = {"dask_server": scheduler, "extra": {"history": history}}
        app.add_handlers(r".*", [(ROUTE, ServingPage, args), (ROUTE + ".json", ServingJSON, args),
                                 (ROUTE + "/history.json", HistoryJSON, args),
                                 (ROUTE + "/workers.json", WorkersJSON, args)])
        app._lbdask_serving = [[rule for rule in r.rules if rule not in old] for r, old in zip(routers, before)]

    def stop(self) -> None:
        """Stop sampling and take the series off `/metrics`."""
        if self._sampler is not None:
            self._sampler.stop()
        if self._collector is not None:
            metrics.unregister(self._collector)
        self._sampler = self._collector = None

    async def close(self) -> None:
        self.stop()


def remove_pages(dask_scheduler: Any) -> bool:
    """Drop the serving routes, history and series from the scheduler and the plugin that added them
    (run on the scheduler); afterwards the pages answer 404 and a later install adds them
    again. True when there were routes to drop."""
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if plugin is not None:
        plugin.stop()
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
