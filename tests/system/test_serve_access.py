"""Access statistics and prewarm through real `dask scheduler` / `dask worker` processes."""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import Counter

import pytest
from distributed import Client

import lbdask
from lbdask.access.log import load_access
from lbdask.serve.deploy import install, uninstall
from lbdask.serve.settings import ServeSettings
from lbdask.storage import open_location
from tests.support.cluster import DaskProcesses, subprocess_env
from tests.support.serve import build_serving_archive, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(taef2_dir):
    procs = DaskProcesses(subprocess_env())
    procs.start_worker()
    procs.start_worker()
    procs.wait_workers(2)
    yield procs
    procs.close()


def settings(**worker) -> ServeSettings:
    s = ServeSettings()
    s.worker = dataclasses.replace(s.worker, spillover="off", **worker)
    return s


def counts(dest):
    return {k: a.count for k, a in load_access(open_location(dest)).items()}


def worker_stats(address):
    with Client(address, timeout="20s") as client:
        return client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())


def test_reads_hits_and_misses_are_flushed_periodically(cluster, tmp_path, model, taef2_dir):
    dest = str(tmp_path / "arc")
    ids = build_serving_archive(dest, model, n=3)
    with Client(cluster.address, timeout="20s") as client:
        install(client, dest, settings(access_flush_s=0.5, access_compact_every=2), "taef2", str(taef2_dir))
    try:
        asked = ids + ids[:2] + ids[:1]  # misses, then hits
        with lbdask.open(dest, scheduler=cluster.address) as box:
            for image_id in asked:
                box.read(image_id)
            with pytest.raises(KeyError):
                box.read("nope.png")  # a failed read is no access
        expected = dict(Counter(asked))
        assert wait_for(lambda: counts(dest) == expected), counts(dest)
        loc = open_location(dest)
        assert wait_for(lambda: not loc.fs.exists(loc.path("access", "logs"))
                        or not loc.fs.ls(loc.path("access", "logs")))  # compacted meanwhile
        assert counts(dest) == expected
        last = load_access(loc)[ids[0]].last_access
        assert time.time() - 60 < last <= time.time()
    finally:
        with Client(cluster.address, timeout="20s") as client:
            uninstall(client)


def test_teardown_and_clean_worker_shutdown_flush_what_is_pending(cluster, tmp_path, model, taef2_dir):
    dest = str(tmp_path / "arc")
    ids = build_serving_archive(dest, model, n=2)
    with Client(cluster.address, timeout="20s") as client:
        install(client, dest, settings(access_flush_s=3600), "taef2", str(taef2_dir))
    with lbdask.open(dest, scheduler=cluster.address) as box:
        box.read_many(ids)
    time.sleep(1.0)
    assert counts(dest) == {}  # nothing flushed yet: the interval is an hour
    with Client(cluster.address, timeout="20s") as client:
        uninstall(client)
    assert counts(dest) == dict.fromkeys(ids, 1)

    with Client(cluster.address, timeout="20s") as client:
        install(client, dest, settings(access_flush_s=3600), "taef2", str(taef2_dir))
    with lbdask.open(dest, scheduler=cluster.address) as box:
        box.read_many(ids)
    for worker in cluster.workers:
        os.kill(worker.pid, signal.SIGTERM)  # a clean shutdown: plugin teardown runs
    for worker in cluster.workers:
        worker.wait(timeout=60)
    assert counts(dest) == dict.fromkeys(ids, 2)
    cluster.workers.clear()
    cluster.start_worker()
    cluster.start_worker()
    cluster.wait_workers(2)


def test_prewarm_loads_the_owners_cache_without_counting_an_access(cluster, tmp_path, model, taef2_dir):
    dest = str(tmp_path / "arc")
    ids = build_serving_archive(dest, model, n=4)
    with Client(cluster.address, timeout="20s") as client:
        install(client, dest, settings(access_flush_s=0.3), "taef2", str(taef2_dir))
    try:
        with lbdask.open(dest, scheduler=cluster.address) as box:
            assert box.prewarm(ids + ["nope.png"]) == len(ids)
            before = worker_stats(cluster.address)
            assert sum(s["prewarmed"] for s in before.values()) == len(ids)
            assert sum(s["requests"] for s in before.values()) == 0
            box.read_many(ids)
        after = worker_stats(cluster.address)
        hits = sum(s["latent_hits"] + s["image_hits"] for s in after.values())
        assert hits == len(ids)
        assert sum(s["misses"] for s in after.values()) == 0
        assert sum(s["fetches"] for s in after.values()) == sum(s["fetches"] for s in before.values())
        assert wait_for(lambda: counts(dest) == dict.fromkeys(ids, 1)), counts(dest)  # reads only
    finally:
        with Client(cluster.address, timeout="20s") as client:
            uninstall(client)
