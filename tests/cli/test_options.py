"""Global options before or after the subcommand, and config errors before any cluster starts."""
from __future__ import annotations

import shutil

import pytest

from lbdask import cli
from lbdask.cluster.connect import default_workers
from lbdask.config import CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR
from lbdask.errors import NotFoundError


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A private copy of the default configs, used through --config-dir."""
    folder = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))  # recorded, so teardown removes what --config-dir sets
    monkeypatch.delenv(CONFIG_DIR_ENV)
    return folder


def set_key(folder, name, key, value):
    path = folder / f"{name}.yaml"
    lines = path.read_text().splitlines()
    lines = [f"{line.split(':')[0]}: {value}" if line.strip().startswith(f"{key}:") else line for line in lines]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_subcommand(where, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()      # a folder that holds no archive: NotFoundError
    argv = ["ls", str(tmp_path / "nothing")]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(NotFoundError):     # --debug: the error is raised, not printed
        cli.main(argv)
    assert cli.main(argv[1:] if where == "before" else argv[:-1]) == 2
    assert capsys.readouterr().err.startswith("lbdask: error: ")


@pytest.mark.parametrize(("name", "key", "value", "message"), [
    ("cluster", "n_workers", "-1", "n_workers must be at least 1, or null .*not -1"),
    ("cluster", "n_workers", "0", "n_workers must be at least 1.*not 0"),
    ("cluster", "memory_limit", "lots", "memory_limit must be 'auto' or a size.*'lots'"),
    ("cluster", "threads_per_worker", "0", "threads_per_worker must be at least 1"),
    ("archive", "shard_size", "4", "batch size 8 is larger than the shard size 4"),
    ("jobs", "latent_bits", "7", "latent_bits: 7 is not one of"),
    ("jobs", "memory_target", "plenty", "memory_target must be a size.*'plenty'"),
    ("cpu_memory", "trim_threshold_mb", "-5", "trim_threshold_mb"),
])
@pytest.mark.parametrize("where", ["before", "after"])
def test_bad_config_is_one_line_before_any_cluster_starts(name, key, value, message, where, config_dir, tmp_path,
                                                          capsys, monkeypatch):
    set_key(config_dir, name, key, value)
    started = []
    monkeypatch.setattr("lbdask.cluster.connect.LocalCluster", lambda *a, **k: started.append(1))
    options = ["--config-dir", str(config_dir)]
    argv = ["migrate", str(tmp_path), str(tmp_path / "arc"), "--no-progress"]
    assert cli.main(options + argv if where == "before" else argv + options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lbdask: error: {config_dir / name}.yaml")
    assert __import__("re").search(message, err), err
    assert started == []


def test_null_n_workers_is_one_per_cuda_device_else_one_per_two_cores():
    assert [default_workers(0, cores) for cores in (1, 2, 3, 16)] == [1, 1, 1, 8]
    assert default_workers(2, 16) == 2


@pytest.mark.parametrize("command", ["migrate", "retier"])
def test_workers_sizes_the_local_cluster_only(command, tmp_path, capsys):
    head = [command, str(tmp_path / "src"), str(tmp_path / "arc")] if command == "migrate" else [command, str(tmp_path)]
    assert cli.main([*head, "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert cli.main([*head, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot be used with --scheduler" in capsys.readouterr().err
