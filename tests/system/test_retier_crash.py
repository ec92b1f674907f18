"""A re-tiering run that stops after any store write leaves every object readable, and the
next run finishes the plan (crash injection in-process; SIGKILL of the driver and of a
worker with real `dask scheduler` / `dask worker` processes, for a run of the tier moves
and for a re-encode run)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.model_table import model_table
from lbdask.retier import apply as retier_apply
from lbdask.retier import sweep as retier_sweep
from tests.support.cluster import TAEF2_WEIGHTS, one_worker_cluster, subprocess_env
from tests.support.retier import (
    DAY,
    LATENT_IDS,
    crash_after_each_write,
    old_shards,
    read_all,
    record_reads,
    write_model_y_configs,
    write_policy,
)

pytestmark = pytest.mark.slow
LATER = 100
POLICY = """
batch_size: 1
demote: {enabled: true, cold_days: 90, min_psnr: 20}
promote: {enabled: true, window_days: 7, min_reads: 3, cold_days: 30}
convert: {enabled: true}
"""


@pytest.fixture(scope="module")
def base(retier_archive, tmp_path_factory):
    """The shared archive with reads recorded: k0 read lately (converted, not demoted), l0 hot."""
    root, shared = retier_archive
    dest = str(tmp_path_factory.mktemp("retier-crash") / "arc")
    shutil.copytree(shared, dest)
    now = time.time()
    record_reads(dest, {"k0.png": (1, now + (LATER - 5) * DAY), "l0.png": (5, now + LATER * DAY)})
    return root, dest


def at(days: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(time.time() + days * DAY, dt.timezone.utc).isoformat(timespec="seconds")


def final_state_ok(dest: str) -> None:
    rows = {r.id: r for r in Archive.open(dest).rows()}
    assert rows["k0.png"].kept_format == "jxl"
    assert rows["l0.png"].pixel is not None
    assert all(rows[i].status == "latent" or rows[i].demote_floor == 20 for i in ("k1.png", "k2.png", "crop0.png"))
    assert any(rows[i].status == "latent" for i in ("k1.png", "k2.png", "crop0.png"))


def plan_is_empty(dest: str, policy: str, tmp_path) -> bool:
    import json

    out = tmp_path / "left.json"
    assert cli.main(["retier", dest, "--policy", policy, "--now", at(LATER), "--plan-out", str(out)]) == 0
    return all(m["count"] == 0 for m in json.loads(out.read_text())["moves"].values())


def test_a_crash_after_any_write_of_a_run_leaves_every_object_readable(base, tmp_path, monkeypatch, capsys):
    """Crash after the k-th store write of a run, for every k, read every id, run again, check the end state."""
    root, dest0 = base
    policy = write_policy(tmp_path / "p.yaml", POLICY.replace("batch_size: 1", "batch_size: 2"))

    def patch(m, counting):
        for name in ("write_shard", "put_originals", "commit", "compact"):
            m.setattr(Archive, name, counting(getattr(Archive, name), name))
        m.setattr(retier_sweep, "remove_quietly", counting(retier_sweep.remove_quietly, "sweep"))
        m.setattr(retier_apply, "write_retier_run", counting(retier_apply.write_retier_run, "summary"))

    def argv(dest, scheduler):
        return ["retier", dest, "--policy", policy, "--now", at(LATER), "--apply", "--no-progress",
                "--weights", str(TAEF2_WEIGHTS), "--scheduler", scheduler, "--debug"]

    def check(dest, k):
        capsys.readouterr()
        final_state_ok(dest)
        assert plan_is_empty(dest, policy, tmp_path), k

    k, writes = crash_after_each_write(tmp_path, monkeypatch, dest0, patch, argv, check)
    assert k >= 10, writes  # demote shards + commits, convert and promote objects + commits, sweep, compaction, summary


@pytest.fixture(scope="module")
def configs_y(tmp_path_factory) -> Path:
    """The shipped configs plus model Y, for the kill tests' cluster and drivers."""
    return write_model_y_configs(tmp_path_factory.mktemp("configs-y") / "configs")


@pytest.fixture(scope="module")
def cluster(configs_y):
    """One scheduler and worker for the kill tests (a test that kills the worker starts another).

    A worker keeps the model configs the last job's resident model carried (`adopt`), and a
    re-encode-only run registers no resident model: so the worker's own configs and every
    driver's (`slow_configs`) name model Y, whichever run came first."""
    with one_worker_cluster({**subprocess_env(), "LBDASK_CONFIG_DIR": str(configs_y)}) as procs:
        yield procs


def slow_configs(tmp_path, configs_y: Path) -> str:
    """The model-Y configs with refinement on, so each demote or re-encode chunk takes long
    enough to kill the job between commits."""
    folder = tmp_path / "slow-configs"
    shutil.copytree(configs_y, folder)
    jobs = (folder / "jobs.yaml").read_text()
    (folder / "jobs.yaml").write_text(jobs.replace("refine_steps: 0", "refine_steps: 10"))
    assert "refine_steps: 10" in (folder / "jobs.yaml").read_text()
    return str(folder)


def retier_batches(dest: str) -> list[str]:
    folder = os.path.join(dest, "catalog", "batches")
    return [n for n in os.listdir(folder) if n.startswith("rt")] if os.path.isdir(folder) else []


REENCODE_POLICY = """
batch_size: 1
demote: {enabled: false}
promote: {enabled: false}
reencode: {enabled: true, from: taef2, to: taef2-y, min_psnr: 20}
"""


def reencoded_ok(dest: str) -> None:
    """Every latent row on model Y, and model X's shards swept."""
    rows = {r.id: r for r in Archive.open(dest).rows()}
    y = model_table(Archive.open(dest))[1]["fingerprint"]
    assert all(rows[i].model_fingerprint == y and rows[i].reencoded for i in LATENT_IDS)
    assert old_shards(dest) == []


@pytest.fixture(params=["tiers", "reencode"])
def killed_run(request) -> tuple[str, object]:
    """(policy, end-state check) of the run to kill: the tier moves (demote, promote, convert),
    or a re-encode to model Y (the model_y configs, in the environment before dask_env takes it)."""
    if request.param == "reencode":
        request.getfixturevalue("model_y")
        return REENCODE_POLICY, reencoded_ok
    return POLICY, final_state_ok


def reads_match_rows(dest: str, ids: set[str]) -> None:
    """Every id reads, and `lbdask verify --all` (in this process: the archive on the store is
    what is checked) passes: each latent decodes, with its row's model, to its row's
    `decode_sha256`; every checksum holds."""
    assert set(read_all(dest)) == ids
    assert cli.main(["verify", dest, "--all", "--weights", str(TAEF2_WEIGHTS)]) == 0


@pytest.mark.parametrize("victim", ["driver", "worker"])
def test_kill_minus_9_mid_apply_then_a_second_apply_finishes(victim, killed_run, cluster, configs_y, base, tmp_path,
                                                             dask_env):
    root, dest0 = base
    dest = str(tmp_path / "arc")
    shutil.copytree(dest0, dest)
    ids = set(read_all(dest0))
    text, final_check = killed_run
    policy = write_policy(tmp_path / "p.yaml", text)
    cmd = [sys.executable, "-m", "lbdask", "retier", dest, "--policy", policy, "--now", at(LATER), "--apply",
           "--no-progress", "--weights", str(TAEF2_WEIGHTS), "--scheduler", cluster.address,
           "--config-dir", slow_configs(tmp_path, configs_y)]
    driver = subprocess.Popen(cmd, env=dask_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not retier_batches(dest):
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.time() < deadline, "no chunk committed"
            time.sleep(0.05)
        if victim == "driver":
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
            assert not plan_is_empty(dest, policy, tmp_path), "the run's moves were all done before the kill"
            reads_match_rows(dest, ids)  # every object readable after the kill
            rerun = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=300)
            assert rerun.returncode == 0, rerun.stderr[-3000:]
        else:
            os.kill(cluster.workers[-1].pid, signal.SIGKILL)
            cluster.start_worker()
            out, err = driver.communicate(timeout=300)
            assert driver.returncode == 0, err[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    reads_match_rows(dest, ids)
    final_check(dest)
    assert plan_is_empty(dest, policy, tmp_path)
