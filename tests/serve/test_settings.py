"""serve.yaml's `worker:` section, and its old name `runtime:` read for one more release with a warning."""
from __future__ import annotations

import logging
import warnings

import pytest

from lbdask.errors import ConfigError
from lbdask.serve.settings import WorkerConfig, load_serve_settings

SECTION = "  cache_bytes: 1234\n  spillover: steal\n  catalog_refresh_s: 2.5\n"


def test_the_old_section_name_loads_with_a_warning_naming_the_new_key_and_the_file(tmp_path, caplog):
    new, old = tmp_path / "new.yaml", tmp_path / "old.yaml"
    new.write_text("worker:\n" + SECTION)
    old.write_text("runtime:\n" + SECTION + "  fetch_delay_ms: 0\n  fetch_mb_per_s: 0\n")   # as shipped before
    expected = load_serve_settings(str(new))
    assert expected.worker == WorkerConfig(cache_bytes=1234, spillover="steal", catalog_refresh_s=2.5)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_serve_settings(str(old)) == expected
    for said in ([str(w.message) for w in caught if w.category is DeprecationWarning],
                 [r.getMessage() for r in caplog.records]):
        assert any(line.startswith(f"{old}: key 'runtime' is deprecated") and line.endswith("use 'worker'")
                   for line in said), said
        assert any("`worker.fetch_delay_ms` is no longer read" in line for line in said), said


def test_both_names_at_once_are_refused(tmp_path):
    both = tmp_path / "serve.yaml"
    both.write_text("worker:\n" + SECTION + "runtime:\n" + SECTION)
    with pytest.raises(ConfigError, match="'runtime' is the old spelling of 'worker'"):
        load_serve_settings(str(both))


def test_the_shipped_file_uses_the_new_name_and_warns_of_nothing(recwarn):
    load_serve_settings()
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_the_old_backend_key_of_the_worker_section_reads_as_runtime(tmp_path, recwarn):
    old = tmp_path / "serve.yaml"
    old.write_text("worker:\n  backend: openvino\n")
    assert load_serve_settings(str(old)).worker.runtime == "openvino"
    assert any("key 'backend' is deprecated" in str(w.message) and "use 'runtime'" in str(w.message) for w in recwarn)
