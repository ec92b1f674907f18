"""The soak script's archive checks (benchmarks/soak_migrate.py) judge a real archive correctly.

The soak itself is not CI (it migrates the shared corpus for an hour); its checks are, since
a check that flags every healthy row - or none - makes the soak's verdict worthless.
"""
import importlib.util
import random
import signal
import subprocess
import time
from pathlib import Path

from lbdask.archive import Archive
from lbdask.archive.rows import CatalogRow

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak_migrate.py"
MODEL = {"name": "tiny", "fingerprint": "f" * 64, "latent_channels": 4, "downsample": 8, "config": {}}


def soak_module():
    spec = importlib.util.spec_from_file_location("soak_migrate", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_of_folded_and_unfolded_batches_count_as_committed_and_others_do_not(tmp_path):
    arc = Archive.create(str(tmp_path / "arc"), MODEL)
    arc.commit("job1-a", [CatalogRow(id="a.png", status="failed", reason="x", source_size=3)])
    arc.compact()  # job1-a is folded: its copy is catalog/folded/<fan>/job1-a.jsonl.gz
    arc.commit("job2-b", [CatalogRow(id="b.png", status="failed", reason="y", source_size=4)])  # not folded yet
    rows = list(Archive.open(str(tmp_path / "arc")).rows())
    assert sorted(r.batch_id for r in rows) == ["job1-a", "job2-b"]
    soak = soak_module()
    assert soak.uncommitted(arc, rows) == []
    ghost = CatalogRow(id="c.png", status="failed", reason="z", source_size=5, batch_id="never-committed")
    assert soak.uncommitted(arc, [*rows, ghost]) == ["c.png: batch never-committed not committed"]


class SleepCluster:
    """Stand-in workers for the killer: real processes (`sleep`), started like dask workers are."""

    def __init__(self):
        self.workers = []

    def start_worker(self):
        self.workers.append(subprocess.Popen(["sleep", "60"]))


def test_the_worker_killer_waits_for_a_commit_between_kills():
    soak, cluster, committed = soak_module(), SleepCluster(), [0]
    cluster.start_worker()
    killer = soak.WorkerKiller(cluster, 0.05, random.Random(0), lambda: committed[0])
    killer.start()
    try:
        time.sleep(0.5)
        assert killer.kills == 0 and killer.skipped > 0 and cluster.workers[0].poll() is None
        committed[0] = 1  # one input committed: the next tick kills once, then waits again
        time.sleep(0.5)
        assert killer.kills == 1 and cluster.workers[0].wait(5) == -signal.SIGKILL
    finally:
        killer.stop.set()
        killer.join(5)
        for w in cluster.workers:
            w.kill()
            w.wait()
