"""A re-encode run that stops after any store write (the model table entry, a shard of model
Y, a commit, each delete of the sweep, compaction, the summary) leaves every object readable, and the next
run finishes it (crash injection in-process, as tests/system/test_retier_crash.py does)."""
from __future__ import annotations

import json

import pytest

from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.model_table import model_table
from lbdask.retier import apply as retier_apply
from lbdask.retier import sweep as retier_sweep
from tests.support.cluster import TAEF2_WEIGHTS
from tests.support.retier import LATENT_IDS, crash_after_each_write, old_shards, read_all, write_policy

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("model_y")
def test_a_crash_after_any_write_of_a_reencode_leaves_every_object_readable(retier_archive, tmp_path, monkeypatch, capsys):
    root, dest0 = retier_archive
    policy = write_policy(tmp_path / "p.yaml", "batch_size: 2\ndemote: {enabled: false}\npromote: {enabled: false}\n"
                                               "reencode: {enabled: true, from: taef2, to: taef2-y, min_psnr: 20}\n")

    def patch(m, counting):
        for name in ("write_shard", "commit", "compact"):
            m.setattr(Archive, name, counting(getattr(Archive, name), name))
        for name in ("register_model", "write_retier_run"):
            m.setattr(retier_apply, name, counting(getattr(retier_apply, name), name))
        m.setattr(retier_sweep, "remove_quietly", counting(retier_sweep.remove_quietly, "remove_quietly"))

    def argv(dest, scheduler):
        return ["retier", dest, "--policy", policy, "--apply", "--no-progress", "--weights", str(TAEF2_WEIGHTS),
                "--scheduler", scheduler, "--debug"]

    def check(dest, k):
        rows = {r.id: r for r in Archive.open(dest).rows()}
        y = model_table(Archive.open(dest))[1]["fingerprint"]
        assert all(rows[i].model_fingerprint == y and rows[i].reencoded for i in LATENT_IDS), k
        read_all(dest)
        assert old_shards(dest) == [], k  # model X's shards are swept, also when a crash stopped the sweep
        out = tmp_path / "left.json"
        capsys.readouterr()
        assert cli.main(["retier", dest, "--policy", policy, "--plan-out", str(out)]) == 0
        assert json.loads(out.read_text())["moves"]["reencode"]["count"] == 0, k

    k, writes = crash_after_each_write(tmp_path, monkeypatch, dest0, patch, argv, check)
    # table entry, 2 x (shard, commit), the sweep (originals, then each of X's shards), compaction, summary
    assert writes[0] == "register_model" and writes.count("remove_quietly") >= 2 and k >= 8, writes
