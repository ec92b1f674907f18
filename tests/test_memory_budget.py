"""The worker's memory budget schedules model calls: concurrent estimated peaks stay within it, nothing deadlocks."""
from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from lbdask.models.memory_budget import IMAGE_BYTES_PER_PIXEL, MemoryBudget, call_peak_bytes
from lbdask.models.registry import load_registry


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
