"""`--config-dir` and `serve --config` reach the workers of an existing cluster (issue 23, item 6).

One real `dask scheduler` and one real `dask worker`, both started WITHOUT LBDASK_CONFIG_DIR:
what the worker uses must be what the driver (the `lbdask` command) loaded, carried by the
worker plugins (serve.plugin.ServePlugin, lbdask.models.resident.ResidentModel), not the
default configuration the worker would read from its own environment. The configuration dir
sets values no default has: serve.yaml's cache budget and catalog refresh interval, and
models.yaml's runtime of taef2 (`torch`, where the default `auto` picks OpenVINO here).
`migrate --scheduler` and `retier --scheduler` load their model through the same plugin as a
`ResidentModel` registered from the driver (a real migration run would add ~30 s).
"""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from distributed import Client

from lbdask.config import CONFIG_DIR_ENV
from lbdask.serve.plugin import PLUGIN_NAME
from tests.support.cluster import REPO, DaskProcesses, one_worker_cluster, subprocess_env
from tests.support.serve import build_serving_archive

pytestmark = pytest.mark.slow

CACHE_BYTES = 123_456_789   # serve.yaml of the --config-dir folder
REFRESH_S = 7.25
OTHER_CACHE_BYTES = 98_765_432  # the serve.yaml given with --config


def _env() -> dict[str, str]:
    env = subprocess_env()
    env.pop(CONFIG_DIR_ENV, None)
    return env


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    for f in (REPO / "configs").glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    _edit(folder / "serve.yaml", lambda d: d.setdefault("worker", {}).update(
        cache_bytes=CACHE_BYTES, catalog_refresh_s=REFRESH_S))
    _edit(folder / "models.yaml", lambda d: d["models"]["taef2"].update(runtime="torch"))
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskProcesses]:
    with one_worker_cluster(_env()) as procs:
        yield procs


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model) -> str:
    dest = str(tmp_path_factory.mktemp("arc") / "arc")
    build_serving_archive(dest, model, n=2)
    return dest


@contextlib.contextmanager
def _serving(args: list[str], log: Path) -> Iterator[None]:
    """`lbdask ... serve ...` as a subprocess until it says it serves; SIGTERM ends it (exit 0)."""
    proc = subprocess.Popen([sys.executable, "-m", "lbdask", *args], stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True, env=_env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), (line, log.read_text())
        yield
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _view(cluster: DaskProcesses) -> dict:
    """What the worker's serving runs with (its stats handler, its watch, its model)."""
    def worker_view(dask_worker) -> dict:  # local: pickled by value, the worker has no tests/
        plugin = dask_worker.plugins[PLUGIN_NAME]
        return {"cache_bytes": dask_worker.handlers["lbdask_stats"]()["capacity_bytes"],
                "catalog_refresh_s": plugin.serving.watch.interval_s,
                "runtime": plugin.source.resident().get().inference.runtime}

    with Client(cluster.address, timeout="20s") as client:
        [view] = client.run(worker_view).values()
    return view


def test_serve_config_dir_reaches_the_workers(cluster, archive, config_dir, taef2_dir, tmp_path):
    with _serving(["--config-dir", str(config_dir), "serve", archive, "--scheduler", cluster.address,
                   "--weights", str(taef2_dir)], tmp_path / "serve.log"):
        assert _view(cluster) == {"cache_bytes": CACHE_BYTES, "catalog_refresh_s": REFRESH_S, "runtime": "torch"}


def test_serve_config_file_reaches_the_workers(cluster, archive, config_dir, taef2_dir, tmp_path):
    serve_yaml = tmp_path / "my-serve.yaml"
    shutil.copy(config_dir / "serve.yaml", serve_yaml)
    _edit(serve_yaml, lambda d: d["worker"].update(cache_bytes=OTHER_CACHE_BYTES))
    with _serving(["serve", archive, "--scheduler", cluster.address, "--config", str(serve_yaml),
                   "--weights", str(taef2_dir)], tmp_path / "serve.log"):
        view = _view(cluster)
    # the driver's own configuration (the defaults) for the model, the file for the runtime
    assert view == {"cache_bytes": OTHER_CACHE_BYTES, "catalog_refresh_s": REFRESH_S, "runtime": "openvino"}


def test_a_bad_config_dir_fails_on_the_driver_in_one_line(cluster, archive, config_dir, tmp_path, monkeypatch,
                                                          capsys):
    from lbdask.cli import main

    bad = tmp_path / "bad"
    shutil.copytree(config_dir, bad)
    _edit(bad / "models.yaml", lambda d: d["models"]["taef2"].update(runtime="cuda-magic"))
    monkeypatch.setenv(CONFIG_DIR_ENV, "")  # restored afterwards: main() sets it from --config-dir
    assert main(["--config-dir", str(bad), "serve", archive, "--scheduler", cluster.address]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"lbdask: error: \S*models\.yaml\.models\.taef2\.runtime: 'cuda-magic' is not one of .*\n", err), err


def test_the_migration_model_plugin_carries_the_drivers_config(cluster, config_dir, taef2_dir, monkeypatch):
    """`migrate --scheduler` and `retier --scheduler` register this plugin from the driver."""
    from lbdask.models.resident import PLUGIN_NAME as MODEL_PLUGIN
    from lbdask.models.resident import ResidentModel

    monkeypatch.setenv(CONFIG_DIR_ENV, str(config_dir))  # what `lbdask --config-dir` does on the driver

    def loaded_runtime(dask_worker) -> str:  # local: pickled by value
        return dask_worker.plugins[MODEL_PLUGIN].get().inference.runtime

    with Client(cluster.address, timeout="20s") as client:
        client.register_plugin(ResidentModel("taef2", str(taef2_dir)))
        try:
            assert list(client.run(loaded_runtime).values()) == ["torch"]
        finally:
            client.unregister_worker_plugin(MODEL_PLUGIN)
