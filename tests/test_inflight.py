"""Pixels in flight: batches planned by pixels, and the driver's window, bounded by the budget."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings, strategies as st

from lbdask.migrate.inflight import BATCH_BYTES_PER_PIXEL, BATCH_SHARE, PixelWindow, pixel_budget, run_windowed
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.scan import SourceItem
from lbdask.migrate.settings import load_job_settings

SETTINGS = dataclasses.replace(load_job_settings(), max_pixels=80_000_000, bomb_pixels=89_000_000)
MP = 1_000_000
LIMIT = 2 * 2**30  # the test cluster's worker memory limit


def image(i: int, w: int, h: int, mode: str = "RGB") -> SourceItem:
    return SourceItem(f"img{i:03d}", 100, f"{i:064x}", w, h, mode, 8, False)


# few distinct sides, so images share padded shapes and batch together: 64 px to 9000 px (81 MP, above max_pixels)
sides = st.sampled_from([64, 1000, 2048, 4096, 8192, 9000])
sizes = st.lists(st.tuples(sides, sides, st.sampled_from(["RGB", "RGB", "L"])), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(sizes, st.integers(1, 8), st.integers(1, 100).map(lambda m: m * MP))
def test_a_planned_batch_never_holds_more_pixels_than_the_budget_unless_it_is_one_image(dims, batch_size, budget):
    items = [image(i, w, h, mode) for i, (w, h, mode) in enumerate(dims)]
    batches = plan_batches(items, dataclasses.replace(SETTINGS, batch_size=batch_size), 8, budget)
    assert sorted(i.id for b in batches for i in b.items) == sorted(i.id for i in items)
    for b in batches:
        assert len(b.items) <= batch_size
        assert len(b.items) == 1 or b.pixels <= budget, (len(b.items), b.pixels, budget)


def test_small_images_batch_as_without_a_budget():
    """The corpus path is unchanged: 1 MP images under a 4 GiB worker's budget fill whole batches."""
    items = [image(i, 1224, 816) for i in range(20)]
    budget = pixel_budget([{"memory_limit": 4 * 2**30, "nthreads": 2}], SETTINGS.inflight_batches_per_thread)
    planned = plan_batches(items, SETTINGS, 8, budget.batch)
    assert [b.batch_id for b in planned] == [b.batch_id for b in plan_batches(items, SETTINGS, 8)]
    assert [len(b.items) for b in planned] == [8, 8, 4]


def test_the_job_memory_target_bounds_the_pixels_below_a_larger_memory_limit():
    """A local worker's limit is the machine's memory: the job's target plans the batches instead."""
    workers = [{"memory_limit": 64 * 2**30, "nthreads": 2}]
    planned = pixel_budget(workers, 2, target=4 * 2**30)
    assert planned == pixel_budget([{"memory_limit": 4 * 2**30, "nthreads": 2}], 2)
    assert planned.total < pixel_budget(workers, 2).total / 8
    assert pixel_budget([{"memory_limit": 2**30, "nthreads": 2}], 2, target=4 * 2**30) == \
        pixel_budget([{"memory_limit": 2**30, "nthreads": 2}], 2)   # the smaller of the two counts
    assert pixel_budget([{"memory_limit": None, "nthreads": 2}], 2, target=4 * 2**30) == planned  # no limit set
    items = [image(i, 4896, 3264) for i in range(5)]  # 16 MP each
    batched = plan_batches(items, SETTINGS, 8, pixel_budget(workers, 2).batch)
    assert [len(b.items) for b in batched] == [5]
    assert [len(b.items) for b in plan_batches(items, SETTINGS, 8, planned.batch)] == [1] * 5


def test_large_images_go_one_per_batch_under_a_small_budget():
    items = [image(i, 4896, 3264) for i in range(5)]  # 16 MP each
    budget = pixel_budget([{"memory_limit": 4 * 2**30, "nthreads": 2}], SETTINGS.inflight_batches_per_thread)
    assert [len(b.items) for b in plan_batches(items, SETTINGS, 8, budget.batch)] == [1] * 5


def test_budget_from_a_real_clusters_workers(dask_client):
    """`pixel_budget` reads the keys a real scheduler reports; no memory limit means no bound."""
    budget = pixel_budget(dask_client.scheduler_info()["workers"].values(), 2)
    per_worker = int(LIMIT * BATCH_SHARE) // BATCH_BYTES_PER_PIXEL
    assert budget.total == per_worker
    assert budget.batch == per_worker // (6 * 2)
    assert pixel_budget([{"memory_limit": 0, "nthreads": 2}], 2).total is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=30), st.integers(1, 6), st.integers(1, 150),
       st.randoms(use_true_random=False))
def test_window_never_admits_more_than_the_budget_and_finishes_everything(pixels, max_batches, max_pixels, rnd):
    window, pending, running, done, peak = PixelWindow(max_batches, max_pixels), list(pixels), [], [], 0
    while pending or running:
        while pending and window.admits(pending[0]):
            window.start(pending[0])
            running.append(pending.pop(0))
        in_flight = sum(running)
        assert len(running) <= max_batches
        assert len(running) == 1 or in_flight <= max_pixels
        peak = max(peak, in_flight)
        assert running, "stalled with work pending"
        finished = running.pop(rnd.randrange(len(running)))
        window.finish(finished)
        done.append(finished)
    assert sorted(done) == sorted(pixels)
    assert window.batches == 0 and window.pixels == 0


_live = {"pixels": 0, "peak": 0}
_lock = threading.Lock()


def _hold(pixels: int) -> int:
    """A task that holds `pixels` for a moment, counting what all running tasks hold."""
    with _lock:
        _live["pixels"] += pixels
        _live["peak"] = max(_live["peak"], _live["pixels"])
    time.sleep(0.01)
    with _lock:
        _live["pixels"] -= pixels
    return pixels


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 60), min_size=4, max_size=16))
def test_driver_keeps_the_pixels_of_running_tasks_within_the_budget(dask_client, pixels):
    """Real Dask tasks on 6 threads: what runs at once stays within the window's pixels."""
    _live["peak"] = 0
    results: list[int] = []
    run_windowed(pixels, lambda px: px, lambda px: dask_client.submit(_hold, px, pure=False), results.append,
                 PixelWindow(12, 100))
    assert sorted(results) == sorted(pixels)
    assert _live["peak"] <= max(100, max(pixels))


@pytest.fixture(scope="module")
def dask_client():
    with LocalCluster(n_workers=1, threads_per_worker=6, processes=False, memory_limit=LIMIT, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client
