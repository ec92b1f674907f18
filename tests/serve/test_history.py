"""Read-latency histograms and the scheduler's history rows, in-process (the processes are in
tests/system/test_serve_cluster.py::test_read_latency_series_and_serving_page)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from lbdask.serve.history import ServingHistory
from lbdask.serve.latency import BOUNDS, ReadLatency, quantile
from lbdask.serve.metrics import HEARTBEAT_KEY


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does():
    latency = ReadLatency()
    for seconds in (0.0005, 0.003, 0.004, 0.004, 2.0):
        latency.observe("miss", seconds)
    counts = latency.snapshot()["counts"]["miss"]
    assert sum(counts) == 5 and counts[BOUNDS.index(0.005)] == 3
    # rank 2.5 of 5: one read below, three in 0.0025..0.005 -> 0.0025 + 0.0025 * (2.5 - 1) / 3
    assert quantile(counts, 0.5) == pytest.approx(0.00375)
    assert quantile(counts, 0.99) == pytest.approx(1.0 + 1.5 * 0.95)
    latency.observe("miss", 1000.0)   # beyond the last bound: reported as that bound
    assert quantile(latency.snapshot()["counts"]["miss"], 1.0) == BOUNDS[-1]
    assert quantile(latency.snapshot()["counts"]["image"], 0.5) is None


def test_history_counts_each_read_once_across_samples_and_a_restarted_worker():
    latency = {"w1": ReadLatency(), "w2": ReadLatency()}
    workers = {addr: SimpleNamespace(metrics={}) for addr in latency}

    def beat() -> None:   # what each worker's heartbeat carries (serve.metrics.heartbeat)
        for addr, lat in latency.items():
            workers[addr].metrics[HEARTBEAT_KEY] = {"read_seconds": lat.snapshot()}

    history = ServingHistory(SimpleNamespace(workers=workers), window_s=10)
    latency["w1"].observe("image", 0.002)   # before the first sample: the baseline, not counted
    beat()
    history.sample(now=100)
    for _ in range(3):
        latency["w1"].observe("image", 0.002)
    latency["w2"].observe("miss", 2.0)
    beat()
    row = history.sample(now=102)
    assert row["rate"] == pytest.approx(4 / 2)
    assert row["image_frac"] == pytest.approx(0.75) and row["miss_frac"] == pytest.approx(0.25)
    assert 1 < row["image_p50"] < 2.5 and 1000 < row["miss_p99"] <= 2500 and row["latent_p50"] is None
    latency["w2"] = ReadLatency()           # w2 restarted: its counts start from zero again
    latency["w2"].observe("latent", 0.2)
    beat()
    row = history.sample(now=104)
    assert row["rate"] == pytest.approx(5 / 4) and row["latent_frac"] == pytest.approx(0.2)
    history.sample(now=120)                 # nothing new for longer than the window
    assert history.rows[-1]["rate"] == 0 and history.rows[-1]["image_p50"] is None
    assert history.columns()["time"] == [100_000, 102_000, 104_000, 120_000]
