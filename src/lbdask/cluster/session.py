"""A job's session on its Dask cluster, the plumbing every job repeats: connect (or start the
embedded local cluster), show the dashboard link, register the resident model on every
worker, watch the workers (`ClusterWatch`) under the job's span, and a progress bar.

Migration (`lbdask.migrate.job`) and re-tiering (`lbdask.retier.apply`) run through it.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dask.base import tokenize
from distributed import Client, span

from lbdask.cluster.connect import connect, dashboard_link
from lbdask.cluster.progress import JobProgress
from lbdask.cluster.settings import ClusterSettings
from lbdask.cluster.watch import ClusterWatch
from lbdask.models.resident import ResidentModel, model_info


def worker_path(path: str | None) -> str | None:
    """An existing local path made absolute, so that workers started elsewhere find it too."""
    return os.path.abspath(path) if path and os.path.exists(path) else path


class JobSession:
    """One job's client, the watch over its tasks (`prefixes`) and its progress setting."""

    def __init__(self, client: Client, prefixes: Iterable[str], progress: bool) -> None:
        self.client = client
        self.watch = ClusterWatch(client, prefixes)
        self.progress = progress

    def load_model(self, model: str, weights: str | None, precision: str | None, runtime: str | None) -> dict[str, Any]:
        """Register the resident model plugin on every worker; returns its info as a worker loaded it."""
        self.client.register_plugin(ResidentModel(model, worker_path(weights), precision, runtime))
        return self.client.submit(model_info, key=f"model-info-{tokenize(model, time.time())}", pure=False).result()

    @contextlib.contextmanager
    def watched(self, name: str) -> Iterator[ClusterWatch]:
        """The job's work under the span `name`, its workers watched throughout."""
        with span(name), self.watch:
            yield self.watch

    @contextlib.contextmanager
    def progress_bar(self, images: int, source_bytes: int, desc: str) -> Iterator[JobProgress]:
        """A progress bar (silent without progress), closed however the work ends."""
        bar = JobProgress(images, source_bytes, enabled=self.progress, desc=desc)
        try:
            yield bar
        finally:
            bar.close()


@contextlib.contextmanager
def job_session(scheduler: str | None, cluster: ClusterSettings, workers: int | None, prefixes: Iterable[str],
                progress: bool, log: Callable[[str], None]) -> Iterator[JobSession]:
    """A session on `scheduler`, or on a local cluster closed again on exit; the dashboard
    link goes to `log` when progress is shown."""
    with connect(scheduler, cluster, workers) as client:
        link = dashboard_link(client)
        if link and progress:
            log(f"dashboard: {link}")
        yield JobSession(client, prefixes, progress)
