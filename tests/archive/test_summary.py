from types import SimpleNamespace

import pytest

from lbdask.archive.summary import by_representation, cluster_health, psnr_histogram, psnr_stats, refinement, storage
from lbdask.cli.report import drr_text, storage_lines


def test_psnr_histogram_counts_every_value_once_with_open_end_bins():
    values = [10.0, 25.0, 25.5, 33.0, 70.0]
    hist = psnr_histogram(values)
    assert sum(b["count"] for b in hist) == len(values)
    assert hist[0]["lo"] is None and hist[0]["count"] == 1      # below the first edge
    assert hist[-1]["hi"] is None and hist[-1]["count"] == 1    # above the last edge
    (bin24,) = [b for b in hist if b["lo"] == 24.0]
    assert bin24["count"] == 2


def test_psnr_stats_mean_p05_min():
    stats = psnr_stats([30.0, 40.0, 50.0])
    assert stats["psnr_mean"] == 40.0 and stats["psnr_min"] == 30.0
    assert 30.0 < stats["psnr_p05"] < 32.0
    assert psnr_stats([]) == {"psnr_mean": None, "psnr_p05": None, "psnr_min": None}


def test_refinement_reports_before_after_and_time():
    rep = refinement([10, 30], [30.0, 32.0], [36.0, 40.0], [{"refine_seconds": 2.5}, {"refine_seconds": 1.5}, {}])
    assert rep["images"] == 2 and rep["steps_mean"] == 20.0 and rep["seconds"] == 4.0
    assert rep["before"]["psnr_mean"] == 31.0 and rep["after"]["psnr_mean"] == 38.0
    assert refinement([], [], [], []) is None


def rows_of(*specs):
    return [SimpleNamespace(status=s, source_size=src, stored_bytes=st) for s, src, st in specs]


def test_drr_counts_every_stored_input_and_breaks_the_bytes_down():
    # one latent (1000 -> 300), one kept PNG and one failed input stored as their bytes, one refused
    reps = by_representation(rows_of(("latent", 1000, 300), ("kept", 400, 400), ("failed", 50, 50), ("refused", 0, 0)))
    parts = {"latents": 320, "originals": 450, "catalog": 30}
    got = storage(reps, parts)
    assert got["bytes_source"] == 1450 and got["bytes_stored"] == 800
    assert got["drr"] == pytest.approx(1 - 800 / 1450)
    r = got["representations"]
    assert (r["failed"]["images"], r["failed"]["bytes_stored"]) == (1, 50) and r["refused"]["images"] == 1
    assert r["catalog"]["bytes_stored"] == 30 and r["overhead"]["bytes_stored"] == 20  # Zarr metadata, indexes
    assert sum(p["bytes_stored"] for p in r.values()) == 800


def test_nothing_converted_gives_no_ratio_but_says_so():
    reps = by_representation(rows_of(("kept", 400, 400), ("failed", 437_000, 437_000)))
    got = storage(reps, {"latents": 0, "originals": 437_400, "catalog": 900})
    assert got["drr"] is None
    assert drr_text(got).startswith("none: no input was converted to a latent (438,300 bytes stored for 437,400")
    assert "DRR" not in " ".join(storage_lines(got))


def test_cluster_health_sums_losses_and_keeps_the_peak():
    jobs = [{"cluster": {"workers_lost": 2, "tasks_retried": 5, "peak_worker_memory": 10}},
            {"cluster": {"workers_lost": 0, "tasks_retried": 0, "peak_worker_memory": 30}}, {}]
    assert cluster_health(jobs) == {"jobs": 2, "workers_lost": 2, "tasks_retried": 5, "peak_worker_memory": 30}
    assert cluster_health([{}]) is None


def test_job_summary_of_a_job_that_converted_nothing_says_so():
    from lbdask.cli.migrate import format_summary
    from lbdask.migrate.totals import JobTotals
    from lbdask.representation.batch import BatchResult

    totals = JobTotals()
    reps = by_representation(rows_of(("kept", 6000, 6000), ("failed", 437_000, 437_000)))
    totals.add(BatchResult("keep-1", 2, 443_000, {"kept": 1, "failed": 1}, reps, {"kept:palette": 1, "failed:bomb": 1}, []))
    summary = {"src": "s", "dest": "d", "model": "taef2", "images_listed": 2, "images_already_committed": 0,
               **totals.record(2.0, {"start": 1.0, "scan": 0.5, "batches": 0.5},
                               {"latents": 0, "originals": 443_000, "catalog": 700},
                               {"workers_lost": 2, "tasks_retried": 3, "peak_worker_memory": 3 * 2**30,
                                "peak_worker_memory_fraction": 0.75})}
    text = format_summary(summary)
    assert summary["drr"] is None and "DRR none: no input was converted to a latent" in text
    assert "%" not in text.split("DRR")[1].splitlines()[0]
    assert "2 worker(s) lost or restarted, 3 task(s) retried, peak worker memory 3.00 GiB (75% of its limit)" in text
    assert "failed (raw)       1 images        437,000 ->        437,000" in text


def test_job_summary_says_which_kept_copies_are_jpeg_xl():
    # a --kept-format jxl --lossy-fallback jxl job: the summary must not call lossless JPEG XL copies "PNG"
    from lbdask.cli.migrate import format_summary
    from lbdask.migrate.totals import JobTotals
    from lbdask.representation.batch import BatchResult

    rows = [SimpleNamespace(status="kept", kept_format="jxl", source_size=6000, stored_bytes=4000),
            SimpleNamespace(status="kept", kept_format="png", source_size=900, stored_bytes=900),
            SimpleNamespace(status="lossy", kept_format="jxl", source_size=8000, stored_bytes=700)]
    totals = JobTotals()
    totals.add(BatchResult("b-1", 3, 14_900, {"kept": 2, "lossy": 1}, by_representation(rows),
                          {"kept:transparency": 1, "kept:palette": 1, "lossy:fidelity": 1}, []))
    summary = {"src": "s", "dest": "d", "model": "taef2", "images_listed": 3, "images_already_committed": 0,
               **totals.record(2.0, {"start": 1.0, "scan": 0.5, "batches": 0.5},
                               {"latents": 0, "originals": 5600, "catalog": 100}, None)}
    text = format_summary(summary)
    assert "latent 0, 2 kept (1 PNG, 1 lossless JPEG XL), failed 0" in text
    assert "lossy JPEG XL 1" in text
