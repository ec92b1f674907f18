"""The serving tests' real cluster: one `dask scheduler` and three `dask worker` processes (the
first with a Prometheus port, each worker's stderr in a file) and a small archive served on it.
The fixtures are module-scoped and made known in conftest.py: each test module that uses them
gets its own cluster; `settings` and `worker_stats` are imported where used."""
from __future__ import annotations

import dataclasses

import pytest
from distributed import Client

from lbdask.serve.deploy import install
from lbdask.serve.settings import ServeSettings
from tests.support.cluster import DaskProcesses, free_port, subprocess_env
from tests.support.serve import build_serving_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model):
    dest = str(tmp_path_factory.mktemp("serve") / "arc")
    return dest, build_serving_archive(dest, model, n=12)


@pytest.fixture(scope="module")
def cluster(taef2_dir, tmp_path_factory):
    env = subprocess_env()
    dash, metrics_port = free_port(), free_port()
    procs = DaskProcesses(env, dashboard_port=dash)
    procs.dashboard_port = dash
    procs.metrics_port = metrics_port
    logs = tmp_path_factory.mktemp("worker-logs")
    procs.logs = [logs / f"worker{k}.log" for k in range(3)]   # each worker's stderr
    for k, log in enumerate(procs.logs):
        procs.start_worker(dashboard_port=metrics_port if k == 0 else None, log=log)
    procs.wait_workers(3)
    yield procs
    procs.close()


def settings(promote_after: int | str = "auto", **worker) -> ServeSettings:
    s = ServeSettings()
    s.worker = dataclasses.replace(s.worker, **worker)
    s.cache = dataclasses.replace(s.cache, promote_after=promote_after)
    return s


@pytest.fixture(scope="module")
def served(cluster, archive, taef2_dir):
    with Client(cluster.address, timeout="20s") as client:
        install(client, archive[0], settings(spillover="off"), "taef2", str(taef2_dir))
    return cluster


def worker_stats(client):
    return client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
