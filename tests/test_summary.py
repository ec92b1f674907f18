from types import SimpleNamespace

from lbdask.archive.summary import psnr_histogram, psnr_stats, refinement


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
    rows = [SimpleNamespace(refine_steps=10, psnr_initial=30.0, psnr=36.0),
            SimpleNamespace(refine_steps=30, psnr_initial=32.0, psnr=40.0)]
    rep = refinement(rows, [{"refine_seconds": 2.5}, {"refine_seconds": 1.5}, {}])
    assert rep["images"] == 2 and rep["steps_mean"] == 20.0 and rep["seconds"] == 4.0
    assert rep["before"]["psnr_mean"] == 31.0 and rep["after"]["psnr_mean"] == 38.0
    assert refinement([], []) is None
