"""Installing and removing serving on a running cluster (what `lbdask serve` does)."""
from __future__ import annotations

from typing import Any

from distributed import Client

from lbdask.serve.archives import FetchHook
from lbdask.serve.dashboard import ROUTE, ServingDashboard, remove_pages
from lbdask.serve.plugin import PLUGIN_NAME, ServePlugin
from lbdask.serve.settings import ServeSettings


def install(client: Client, dest: str, settings: ServeSettings, model: str | None = None,
            weights: str | None = None, storage_options: dict | None = None,
            configs: dict[str, Any] | None = None, fetch_hook: FetchHook | None = None) -> None:
    """Register the dashboard page on the scheduler and serving on every present and future
    worker; `settings`, `configs` (default: this process's `model_configs`) and `fetch_hook`
    (benchmarks: serve.store_latency) go with it."""
    client.register_plugin(ServingDashboard())
    client.register_plugin(ServePlugin(settings, model, weights, preload=[(dest, storage_options)], configs=configs,
                                       fetch_hook=fetch_hook), name=PLUGIN_NAME)


def uninstall(client: Client) -> None:
    """Remove serving from every worker (handlers, metrics, pools, cache) and the serving
    pages from the scheduler's dashboard (they answer 404 afterwards)."""
    client.unregister_worker_plugin(PLUGIN_NAME)
    client.run_on_scheduler(remove_pages)


def dashboard_url(client: Client) -> str | None:
    """The serving page's URL on the scheduler's dashboard, when it has one."""
    link: Any = client.dashboard_link
    if not link:
        return None
    return link.rsplit("/", 1)[0] + ROUTE


def warm(client: Client, dest: str, storage_options: dict | None = None) -> None:
    """Block until every worker has opened `dest` and loaded its model, so first reads do not wait."""
    def open_archive(dask_worker: Any, dest: str = dest, options: dict | None = storage_options) -> None:
        from lbdask.serve.worker import serving_of

        serving_of(dask_worker).archives.open(dest, options)

    client.run(open_archive)
