"""The trace generator hits the published statistics; trace files round-trip; libCacheSim CSV reads."""
from __future__ import annotations

import numpy as np
import pytest

from lbdask.errors import InputError
from lbdask.sim.trace import Trace, generate_trace, load_trace, save_trace, trace_statistics

#: design-notes.md figure -> (target, absolute tolerance)
TARGETS = {
    "top1_share": (0.39, 0.02),
    "top10_share": (0.71, 0.02),
    "once_fraction": (0.15, 0.01),
    "under_ten_fraction": (0.69, 0.01),
    "reaccess_within_hour": (0.38, 0.03),
    "reaccess_within_day": (0.68, 0.03),
    "reaccess_after_30_days": (0.06, 0.015),
    "requests_per_image": (2.07e9 / 92.3e6, 0.5),
}


@pytest.fixture(scope="module")
def trace():
    return generate_trace(400_000, seed=7)


def test_generated_trace_matches_published_statistics(trace):
    stats = trace_statistics(trace)
    for name, (target, tol) in TARGETS.items():
        assert abs(stats[name] - target) <= tol, f"{name}: {stats[name]:.4f} vs {target} +- {tol}"
    for q in range(1, 5):                      # access rate falls > 100x within a year, every quartile
        assert stats[f"decay_q{q}"] > 100, stats
    assert np.all(np.diff(trace.timestamp) >= 0)
    assert trace.timestamp.max() <= 1049 * 86400
    png = trace.png_bytes.mean()
    assert 1.2e6 < png < 1.6e6 and 4.5 < png / trace.latent_bytes.mean() < 5.7


def test_catalog_grows_over_time(trace):
    _, first = np.unique(trace.id, return_index=True)
    births = np.sort(trace.timestamp[first]) / 86400
    per_month_first = np.count_nonzero(births < 30)
    per_month_last = np.count_nonzero(births > 1049 - 30)
    assert per_month_last > 2 * per_month_first


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_round_trip(tmp_path, suffix):
    small = generate_trace(5_000, seed=1)
    path = tmp_path / f"t{suffix}"
    save_trace(small, path)
    back = load_trace(path)
    for name in ("timestamp", "id", "png_bytes", "latent_bytes"):
        assert np.array_equal(getattr(back, name), getattr(small, name))


def test_reads_libcachesim_plain_csv(tmp_path):
    path = tmp_path / "lcs.csv"
    path.write_text("version,time,op,size,lbn\n1,33898,2a,512,42932745\n1,33898,2a,4096,6160447\n"
                    "1,33899,2a,512,42932745\n")
    t = load_trace(path, lcs_columns={"time_col": 2, "id_col": 5, "size_col": 4})
    assert t.id.tolist() == [42932745, 6160447, 42932745]
    assert t.timestamp.tolist() == [33898, 33898, 33899]
    assert t.png_bytes.tolist() == [512, 4096, 512]
    assert isinstance(t, Trace) and t.working_set_bytes() == 4608


def test_bad_trace_files_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        load_trace(tmp_path / "missing.npz")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError):
        load_trace(bad)


def test_cache_yaml_trace_section_belongs_to_the_simulator(tmp_path):
    """cache.yaml's `trace:` loads typed and checked on the simulator's side; the cache's own
    settings read past it without importing the simulator."""
    import subprocess
    import sys

    from lbdask.cache.settings import load_cache_settings
    from lbdask.errors import ConfigError
    from lbdask.sim.settings import load_sim_settings
    from lbdask.sim.trace import TraceConfig

    trace = load_sim_settings().trace
    assert isinstance(trace, TraceConfig) and trace.days == load_cache_settings().trace["days"] == TraceConfig().days
    bad = tmp_path / "cache.yaml"
    bad.write_text("trace:\n  days: -1\n")
    with pytest.raises(ConfigError, match="days"):
        load_sim_settings(str(bad))
    code = "import sys, lbdask.cache.settings; print(any(m.startswith('lbdask.sim') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
