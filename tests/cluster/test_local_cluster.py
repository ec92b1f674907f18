"""The embedded local cluster: sized as configs/cluster.yaml documents, quiet about task errors."""
from __future__ import annotations

import os
import subprocess

import pytest

from lbdask.cluster import connect as cluster_module
from lbdask.cluster.settings import ClusterSettings
from lbdask.errors import InputError
from lbdask.image import pngio
from tests.support.cluster import migrate_cmd, write_grainy_source

pytestmark = pytest.mark.slow


def test_null_n_workers_gives_one_worker_per_two_cores_and_task_errors_are_not_logged(monkeypatch, capfd):
    monkeypatch.setattr(cluster_module, "_cuda_devices", lambda: 0)
    monkeypatch.setattr(cluster_module.os, "cpu_count", lambda: 4)
    before = dict(os.environ)
    with cluster_module.connect(None, ClusterSettings(dashboard_address=None)) as client:
        assert dict(os.environ) == before  # the workers' malloc / OpenMP settings stay theirs
        assert set(client.run(lambda: os.environ.get("MALLOC_ARENA_MAX")).values()) == {"1"}  # ... theirs
        assert sorted(client.nthreads().values()) == [2, 2]
        capfd.readouterr()
        with pytest.raises(InputError):
            client.submit(pngio.decode, b"not a png", 10, pure=False).result()
        client.run(lambda: None)  # the failing worker has logged whatever it logs by now
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "Traceback" not in err, err


def test_error_inside_a_task_reaches_the_user_as_one_line(tmp_path, dask_env):
    write_grainy_source(tmp_path / "src", 1)
    cmd = migrate_cmd(str(tmp_path / "src"), str(tmp_path / "arc"), None, "--workers", "1", "--model", "no-such-model")
    got = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 2, got.stderr[-3000:]
    errors = [line for line in got.stderr.splitlines() if line.startswith("lbdask: error: ")]
    assert errors == [errors[0]] and "unknown model 'no-such-model'" in errors[0]
    assert "Compute Failed" not in got.stderr and "Traceback" not in got.stderr, got.stderr[-3000:]
