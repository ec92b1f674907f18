"""One migration per DEST: a lease with expiry, refused while held, free once its holder is gone."""
import json
import subprocess
import sys
import time

import pytest

from lbdask.archive import lease
from lbdask.archive.lease import LeaseHeldError, hold
from lbdask.cli import main
from lbdask.storage import open_location


def test_a_held_lease_refuses_a_second_holder_and_is_free_after_release(dest):
    loc = open_location(dest)
    with hold(loc, "job one") as mine:
        with pytest.raises(LeaseHeldError, match="in use by job one on .* pid"):
            with hold(loc, "job two"):
                pass
        assert mine.expires > time.time()
    with hold(loc, "job three"):
        assert lease.current(loc)[1].holder.startswith("job three")


def test_the_lease_is_renewed_while_held(tmp_path):
    loc = open_location(str(tmp_path / "arc"))
    with hold(loc, "long job", ttl=0.6):
        time.sleep(1.5)  # several lifetimes: only renewal keeps it
        with pytest.raises(LeaseHeldError, match="long job"):
            with hold(loc, "other", ttl=0.6):
                pass


def test_a_killed_holders_lease_lapses(dest):
    """On this machine at once (its process is gone); from another machine once it expires."""
    loc = open_location(dest)
    code = ("import sys, time; from lbdask.archive.lease import hold; from lbdask.storage import open_location\n"
            "with hold(open_location(sys.argv[1]), 'doomed', ttl=600):\n"
            "    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, dest], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(LeaseHeldError, match="doomed"):
        with hold(loc, "next", ttl=5):
            pass
    proc.kill()  # SIGKILL: no release, no renewal
    proc.wait()
    with hold(loc, "next", ttl=5):
        pass
    n, _ = lease.current(loc)
    remote = {"holder": "far job on elsewhere pid 1", "host": "elsewhere", "pid": 1, "acquired": time.time()}
    loc.fs.pipe_file(loc.path("lease", f"{n + 1:010d}.json"), json.dumps({**remote, "expires": time.time() + 1.5}).encode())
    with pytest.raises(LeaseHeldError, match="far job on elsewhere"):
        with hold(loc, "next", ttl=5):
            pass
    time.sleep(2)
    with hold(loc, "next", ttl=5):
        pass


def test_a_second_migration_into_the_same_dest_is_refused(tmp_path, capsys):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    with hold(open_location(dest), "lbdask migrate /elsewhere"):
        assert main(["migrate", str(src), dest, "--no-progress"]) == 2
    assert "in use by lbdask migrate /elsewhere" in capsys.readouterr().err


def test_compact_is_refused_while_another_job_holds_the_lease_and_takes_it_itself(dest, capsys, monkeypatch):
    from lbdask.archive import Archive
    from tests.support.archive import new_archive, write_batch

    write_batch(new_archive(dest), "b0", ["a.png"])
    loc = open_location(dest)
    with hold(loc, "lbdask migrate /elsewhere"):
        assert main(["compact", dest]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lbdask: error: ") and "in use by lbdask migrate /elsewhere" in err and err.count("\n") == 1
    loc.fs.invalidate_cache(loc.path("catalog", "batches"))
    assert loc.fs.exists(loc.path("catalog", "batches", "b0.jsonl.gz"))  # nothing folded
    seen = []
    real = Archive.compact
    monkeypatch.setattr(Archive, "compact", lambda arc: (seen.append(lease.current(loc)[1].holder), real(arc))[1])
    assert main(["compact", dest]) == 0 and "folded 1 batch(es)" in capsys.readouterr().out
    assert seen[0].startswith("lbdask compact on ")  # held while compacting
    assert lease.current(loc)[1] is None  # and released
