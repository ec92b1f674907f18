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


@pytest.fixture(params=["folder", "s3"])
def dest(request):
    if request.param == "folder":
        return str(request.getfixturevalue("tmp_path") / "arc")
    return request.getfixturevalue("s3_bucket") + "/arc"


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
