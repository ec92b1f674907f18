"""The worker's memory budget schedules model calls: concurrent estimated peaks stay within it, nothing deadlocks."""
from __future__ import annotations

import dataclasses
import re
import threading
import time

import dask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbdask.errors import ConfigError
from lbdask.migrate.inflight import BATCH_BYTES_PER_PIXEL, worker_pixels
from lbdask.models.memory_budget import (
    IMAGE_BYTES_PER_PIXEL,
    MemoryBudget,
    budget_bytes,
    call_peak_bytes,
    calls_within,
    check_budget,
)
from lbdask.models.registry import ModelSpec, load_registry


class Ledger:
    """Records the bytes and calls running at once, as seen from inside the admitted blocks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = self.calls = 0
        self.worst: list[tuple[int, int]] = []  # (bytes, calls) whenever a call starts

    def enter(self, nbytes: int) -> None:
        with self.lock:
            self.bytes += nbytes
            self.calls += 1
            self.worst.append((self.bytes, self.calls))

    def leave(self, nbytes: int) -> None:
        with self.lock:
            self.bytes -= nbytes
            self.calls -= 1


def run_calls(budget: MemoryBudget, sizes: list[int], threads: int, hold_s: float = 0.002) -> Ledger:
    """`threads` threads take the calls of `sizes` in turn; each holds its reservation for `hold_s`."""
    ledger, todo, todo_lock = Ledger(), list(sizes), threading.Lock()

    def worker() -> None:
        while True:
            with todo_lock:
                if not todo:
                    return
                nbytes = todo.pop()
            with budget.reserve(nbytes):
                ledger.enter(nbytes)
                time.sleep(hold_s)
                ledger.leave(nbytes)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in pool), "a call never got admitted (deadlock)"
    assert (budget.in_use, budget.running) == (0, 0)
    return ledger


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(10, 100),
       sizes=st.lists(st.integers(1, 130), min_size=1, max_size=30),
       threads=st.integers(1, 6), max_calls=st.integers(1, 4))
def test_concurrent_estimated_peak_never_exceeds_the_budget(capacity, sizes, threads, max_calls):
    budget = MemoryBudget(capacity, max_calls)
    ledger = run_calls(budget, sizes, threads, hold_s=0.001)
    for nbytes, calls in ledger.worst:
        assert calls <= max_calls
        assert nbytes <= capacity or calls == 1  # a call above the whole budget runs, but alone


def test_calls_that_fit_run_concurrently_and_large_ones_wait():
    budget = MemoryBudget(100, max_calls=4)
    small = run_calls(budget, [25] * 8, threads=4, hold_s=0.05)
    assert max(calls for _, calls in small.worst) == 4  # four fit: the budget does not serialise them
    mixed = run_calls(budget, [60, 60, 60, 30, 30], threads=5, hold_s=0.05)
    assert max(b for b, _ in mixed.worst) <= 100
    assert max(calls for b, calls in mixed.worst) <= 2  # two 60s never overlap


def test_a_large_call_is_not_overtaken_forever():
    budget = MemoryBudget(100, max_calls=8)
    order: list[str] = []
    stop = threading.Event()

    def small() -> None:
        while not stop.is_set():
            with budget.reserve(30):
                time.sleep(0.005)

    def large() -> None:
        with budget.reserve(90):
            order.append("large")

    smalls = [threading.Thread(target=small, daemon=True) for _ in range(4)]
    for t in smalls:
        t.start()
    time.sleep(0.05)
    big = threading.Thread(target=large, daemon=True)
    big.start()
    big.join(timeout=5)
    admitted = list(order)  # before the small calls stop
    stop.set()
    for t in smalls:
        t.join(timeout=5)
    assert admitted == ["large"]


def test_interrupted_waiter_leaves_the_line():
    budget = MemoryBudget(10)
    with budget.reserve(10):
        ctx = budget.reserve(5)
        with pytest.raises(KeyboardInterrupt):
            with budget._cond:  # make the next wait raise, as a signal in a waiting thread would
                original = budget._cond.wait
                budget._cond.wait = lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())  # type: ignore[method-assign]
            try:
                ctx.__enter__()
            finally:
                budget._cond.wait = original  # type: ignore[method-assign]
    with budget.reserve(10):  # the line is free again
        assert budget.running == 1


def test_estimates_are_bounded_by_tiling():
    spec = load_registry().models["taef2"]
    mp = 1 << 20
    assert call_peak_bytes(spec, 1 * mp) < call_peak_bytes(spec, 2 * mp) == call_peak_bytes(spec)
    above = call_peak_bytes(spec, 2 * mp + 8)  # tiled: one tile's activations, not the image's
    assert above < call_peak_bytes(spec)
    big = call_peak_bytes(spec, 64 * 10**6)
    assert big == spec.tile_size ** 2 * spec.activation_bytes_per_pixel + 64 * 10**6 * IMAGE_BYTES_PER_PIXEL
    assert big < 6 * 2**30


def test_resident_model_admits_its_calls_by_their_pixels(taef2_dir):
    from lbdask.models import load_model
    from lbdask.models.resident import ResidentModel

    plugin = ResidentModel("taef2", weights=str(taef2_dir), precision="fp32", runtime="torch")
    plugin.model = load_model("taef2", weights=taef2_dir, device="cpu", runtime="torch", precision="fp32")
    spec = plugin.model.spec
    small = 256 * 256
    plugin.budget = MemoryBudget(call_peak_bytes(spec) + call_peak_bytes(spec, small), max_calls=2)

    def overlap(first: int | None, second: int | None) -> bool:
        """Whether a call on `second` pixels starts while one on `first` pixels runs."""
        inside, seen = threading.Event(), []

        def hold() -> None:
            with plugin.use(first):
                inside.set()
                time.sleep(0.3)
                seen.append("first done")

        t = threading.Thread(target=hold)
        t.start()
        inside.wait(5)
        with plugin.use(second) as model:
            assert model is plugin.model
            seen.append("second in")
        t.join(5)
        return seen[0] == "second in"

    assert overlap(None, small)      # a small call fits beside the largest one
    assert not overlap(None, None)   # two of the largest do not: the second waits


TOY = ModelSpec(architecture="tae", tile_threshold=1_500_000, tile_size=512, activation_bytes_per_pixel=2000)


def smallest_limit(spec: ModelSpec) -> int:
    """The smallest worker memory limit `check_budget` accepts, found by bisection."""
    lo, hi = 1, 1 << 40  # lo refused, hi accepted
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            check_budget(mid, spec, "toy")
            hi = mid
        except ConfigError:
            lo = mid
    return hi


def test_largest_call_is_the_threshold_or_one_tile_whichever_is_larger():
    # tiles of 2048 x 2048 px (4.2 MP) above a 1.5 MP threshold: a tiled pass holds a whole tile
    big_tiles = dataclasses.replace(TOY, tile_size=2048)
    assert call_peak_bytes(big_tiles) == call_peak_bytes(big_tiles, 2048 * 2048)
    assert call_peak_bytes(big_tiles) > call_peak_bytes(TOY)


def test_refusal_names_the_limit_the_call_and_a_limit_that_suffices():
    """The one-line error states the numbers: the worker's limit, the call's peak and pixels, and
    the limit to give instead (the smallest that check_budget accepts, rounded up to 0.1 GiB)."""
    peak = call_peak_bytes(TOY)  # 1.5 MP x (2000 + image buffers) bytes: ~2.85 GiB
    with pytest.raises(ConfigError) as err:
        check_budget(2 * 2**30, TOY, "toy")
    message = str(err.value)
    assert "a worker memory limit of 2.0 GiB cannot hold one toy model call" in message
    assert f"(~{peak / 2**30:.1f} GiB for 1.5 MP)" in message
    need = float(re.search(r">= ([0-9.]+) GiB", message).group(1))
    assert 0 <= need - smallest_limit(TOY) / 2**30 < 0.1
    assert "\n" not in message


def test_a_worker_needs_more_memory_than_one_calls_peak_and_counts_whole_calls():
    peak = call_peak_bytes(TOY)
    with pytest.raises(ConfigError):  # the calls get a share of the limit: the whole limit is not enough
        check_budget(peak, TOY, "toy")
    one = smallest_limit(TOY)
    assert one > peak
    assert calls_within(one, TOY) == 1 and calls_within(one - 1, TOY) == 0
    assert calls_within(int(3.5 * one), TOY) == 3  # whole calls: never a fraction
    assert calls_within(None, TOY) is None and calls_within(0, TOY) is None  # 0: Dask's "no limit"


def test_models_and_batches_in_flight_leave_room_for_the_worker_itself():
    """The model calls' share (here) and the batches' share (lbdask.migrate.inflight) of a
    worker's limit stay below the fraction at which the nanny kills the worker: Dask, the
    worker and the shards need the rest."""
    terminate = dask.config.get("distributed.worker.memory.terminate")
    for limit in (2 * 2**30, 16 * 2**30, 10**9 + 7):
        models, batches = budget_bytes(limit), worker_pixels(limit) * BATCH_BYTES_PER_PIXEL
        assert 0 < models and 0 < batches
        assert models + batches < terminate * limit


def test_default_budget_runs_one_call_at_a_time_and_rejects_no_calls():
    ledger = run_calls(MemoryBudget(100), [1] * 6, threads=3, hold_s=0.01)
    assert max(calls for _, calls in ledger.worst) == 1  # tiny calls, plenty of room: still one at a time
    unbounded = run_calls(MemoryBudget(None, max_calls=3), [10**12] * 6, threads=3, hold_s=0.05)
    assert max(calls for _, calls in unbounded.worst) == 3  # no capacity: only max_calls bounds them
    with pytest.raises(ValueError, match="^max_calls must be at least 1$"):
        MemoryBudget(100, max_calls=0)


def test_a_new_budget_has_nothing_running():
    budget = MemoryBudget(100, max_calls=2)
    assert (budget.running, budget.in_use) == (0, 0)
    with budget.reserve(60):
        assert (budget.running, budget.in_use) == (1, 60)


def test_a_worker_given_the_advised_limit_is_accepted():
    spec = load_registry().models["taef2"]
    with pytest.raises(ConfigError) as err:
        check_budget(2 * 2**30, spec, "taef2")
    advised = float(re.search(r">= ([0-9.]+) GiB", str(err.value)).group(1))
    check_budget(int(advised * 2**30), spec, "taef2")
