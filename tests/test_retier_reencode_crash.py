"""A re-encode run that stops after any store write (the model table entry, a shard of model
Y, a commit, the sweep, compaction, the summary) leaves every object readable, and the next
run finishes it (crash injection in-process, as tests/test_retier_crash.py does)."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from cluster_helpers import TAEF2_WEIGHTS
from retier_helpers import read_all, write_policy
from test_retier_reencode import LATENT_IDS, model_y  # noqa: F401 - model_y is a fixture

from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.model_table import model_table
from lbdask.retier import apply as retier_apply

pytestmark = pytest.mark.slow


class Crash(Exception):
    pass


@pytest.mark.usefixtures("model_y")
def test_a_crash_after_any_write_of_a_reencode_leaves_every_object_readable(retier_archive, tmp_path, monkeypatch, capsys):
    from distributed import Client, LocalCluster

    root, dest0 = retier_archive
    policy = write_policy(tmp_path / "p.yaml", "batch_size: 2\ndemote: {enabled: false}\npromote: {enabled: false}\n"
                                               "reencode: {enabled: true, from: taef2, to: taef2-y, min_psnr: 20}\n")
    expected = read_all(dest0)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        k = 0
        while True:
            dest = str(tmp_path / f"k{k}")
            shutil.copytree(dest0, dest)
            writes: list[str] = []

            def counting(real, name):
                def wrapper(*args, **kwargs):
                    if len(writes) == k:
                        raise Crash(name)
                    writes.append(name)
                    return real(*args, **kwargs)
                return wrapper

            with monkeypatch.context() as m:
                for name in ("write_shard", "commit", "compact"):
                    m.setattr(Archive, name, counting(getattr(Archive, name), name))
                for name in ("register_model", "remove_quietly", "write_retier_run"):
                    m.setattr(retier_apply, name, counting(getattr(retier_apply, name), name))
                run = ["retier", dest, "--policy", policy, "--apply", "--no-progress", "--weights", str(TAEF2_WEIGHTS),
                       "--scheduler", cluster.scheduler_address, "--debug"]
                try:
                    cli.main(run)
                    finished = True
                except Crash:
                    finished = False
            client.run(lambda: None)
            while cluster.scheduler.tasks:
                time.sleep(0.05)
            got = read_all(dest)  # every object readable right after the crash
            assert set(got) == set(expected), k
            if not finished:
                assert cli.main(run) == 0, k
            rows = {r.id: r for r in Archive.open(dest).rows()}
            y = model_table(Archive.open(dest))[1]["fingerprint"]
            assert all(rows[i].model_fingerprint == y and rows[i].reencoded for i in LATENT_IDS), k
            read_all(dest)
            out = tmp_path / "left.json"
            capsys.readouterr()
            assert cli.main(["retier", dest, "--policy", policy, "--plan-out", str(out)]) == 0
            assert json.loads(out.read_text())["moves"]["reencode"]["count"] == 0, k
            if finished:
                break
            k += 1
    assert writes[0] == "register_model" and k >= 7, writes  # table entry, 2 x (shard, commit), sweep, compaction, summary
