"""`lbdask.config.adopt` (a worker plugin carrying the driver's files): a worker process reads the
driver's contents where they differ from its own; a worker sharing the driver's process (an
in-process cluster, as several tests and `processes=False` users run) adopts nothing, so a later
change of that process's own configuration (another LBDASK_CONFIG_DIR) still counts."""
from __future__ import annotations

import shutil

import pytest

from lbdask import config


@pytest.fixture
def clean_adoption(monkeypatch):
    monkeypatch.setattr(config, "_adopted", {})


def _config_dir(tmp_path, name: str, text: str):
    folder = tmp_path / name
    shutil.copytree(config.DEFAULT_CONFIG_DIR, folder)
    (folder / "models.yaml").write_text(text)
    return folder


def test_a_snapshot_equal_to_the_own_files_is_not_adopted(clean_adoption, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(_config_dir(tmp_path, "a", "first: 1\n")))
    config.adopt({"models": config.read_yaml("models")})   # the in-process worker of this driver
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(_config_dir(tmp_path, "b", "second: 2\n")))
    assert config.read_yaml("models") == {"second": 2}


def test_a_driver_snapshot_that_differs_is_read_instead_of_the_own_file(clean_adoption, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(_config_dir(tmp_path, "own", "own: 1\n")))
    config.adopt({"models": {"driver": 2}})
    assert config.read_yaml("models") == {"driver": 2}
    config.adopt({"models": {"own": 1}})   # a later plugin shipping what this process reads itself
    assert config.read_yaml("models") == {"own": 1}
