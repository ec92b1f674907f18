"""Pixels in flight: batches planned by pixels, and the driver's window, bounded by the budget."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdask.migrate.inflight import (
    BATCH_BYTES_PER_PIXEL,
    BATCH_SHARE,
    PixelBudget,
    PixelWindow,
    cluster_budget,
    pixel_budget,
    run_windowed,
    worker_pixels,
)
from lbdask.migrate.plan import plan_batches
from lbdask.representation.settings import load_job_settings
from lbdask.representation.sources import SourceItem

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


class FiveByDefault:
    """A client as the distributed releases of 2025 to mid-2026 answer: `scheduler_info()`
    reports at most five workers unless asked for all with `n_workers=-1`."""

    def __init__(self, workers: int) -> None:
        self.workers = {f"tcp://10.0.0.{i}:1": {"memory_limit": LIMIT, "nthreads": 2} for i in range(workers)}

    def scheduler_info(self, n_workers: int = 5) -> dict:
        return {"workers": dict(list(self.workers.items())[:None if n_workers == -1 else n_workers])}


def test_a_cluster_of_64_workers_is_planned_as_64_on_releases_that_report_five_by_default():
    budget = cluster_budget(FiveByDefault(64), 2)
    assert budget.total == 64 * worker_pixels(LIMIT)
    assert budget.batch == worker_pixels(LIMIT) // (2 * 2)
    assert cluster_budget(FiveByDefault(64), 2, target=LIMIT // 2).total == 64 * worker_pixels(LIMIT // 2)


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


def test_budget_of_unequal_workers_sums_their_shares_and_cuts_batches_for_the_smallest():
    big, small = {"memory_limit": 8 * 2**30, "nthreads": 4}, {"memory_limit": 2 * 2**30, "nthreads": 2}
    budget = pixel_budget([big, small], 3)
    assert budget.total == worker_pixels(8 * 2**30) + worker_pixels(2 * 2**30)
    # the small worker holds 2 threads x 3 batches of a quarter of the big one's share (4 x 3)
    assert budget.batch == worker_pixels(2 * 2**30) // 6 < worker_pixels(8 * 2**30) // 12
    assert pixel_budget([small, big], 3) == budget
    assert pixel_budget([big], 3).batch == worker_pixels(8 * 2**30) // 12


def test_no_workers_or_one_without_a_limit_means_no_bound():
    assert pixel_budget([], 2) == PixelBudget(None, None)
    assert pixel_budget([{"memory_limit": 4 * 2**30, "nthreads": 2}, {"memory_limit": None, "nthreads": 2}], 2) \
        == PixelBudget(None, None)


def test_worker_pixels_are_whole_pixels_within_the_batch_share():
    for limit in (2 * 2**30, 10**9 + 7, 1000):
        pixels = worker_pixels(limit)
        assert isinstance(pixels, int)
        assert pixels * BATCH_BYTES_PER_PIXEL <= limit * BATCH_SHARE < (pixels + 1) * BATCH_BYTES_PER_PIXEL
    assert worker_pixels(0) is None and worker_pixels(None) is None


def test_a_tiny_worker_still_gets_batches_and_threads_count_at_least_once():
    tiny = pixel_budget([{"memory_limit": 200, "nthreads": 4}], 2)  # 3 pixels for 8 batches
    assert tiny.batch == 1 and tiny.total == worker_pixels(200)
    limit = 4 * 2**30
    one_thread = pixel_budget([{"memory_limit": limit, "nthreads": 1}], 2)
    assert one_thread.batch == worker_pixels(limit) // 2  # one thread holds its 2 batches
    assert pixel_budget([{"memory_limit": limit}], 2) == one_thread  # nthreads not reported
    assert pixel_budget([{"memory_limit": limit, "nthreads": 0}], 2) == one_thread


def test_window_admits_in_order_and_a_batch_above_the_budget_alone():
    window = PixelWindow(3, 100)
    assert window.admits(150)  # nothing in flight: even a batch above the whole budget
    window.start(150)
    assert not window.admits(1)  # ... runs alone
    window.finish(150)
    for px in (40, 60):
        assert window.admits(px)
        window.start(px)
    assert (window.batches, window.pixels) == (2, 100)
    assert not window.admits(1)  # the pixels are full, though a batch slot is free
    window.finish(40)
    assert window.admits(40) and not window.admits(41)
    window.start(10)
    window.start(10)
    assert not window.admits(1)  # 3 batches: the slots are full, though pixels are free
    for px in (60, 10, 10):
        window.finish(px)
    assert (window.batches, window.pixels) == (0, 0)
    assert PixelWindow(2, None).admits(10**12)


def test_driver_submits_each_item_once_and_hands_back_every_result(dask_client):
    results: list[int] = []
    window = PixelWindow(2, 50)
    run_windowed([30, 30, 5, 70], lambda px: px, lambda px: dask_client.submit(_hold, px, pure=False),
                 results.append, window)
    assert sorted(results) == [5, 30, 30, 70]
    assert (window.batches, window.pixels) == (0, 0)
