"""`lbdask serve DEST` without --scheduler: the embedded local cluster, as a real subprocess.

It must print a scheduler address that clients can read through and a dashboard link whose
serving page answers, and stop cleanly (exit 0, no traceback) on SIGTERM.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from serve_helpers import build_serving_archive

import lbdask

pytestmark = pytest.mark.slow


def _lbdask(*args: str, env: dict[str, str]) -> bytes:
    out = subprocess.run([sys.executable, "-m", "lbdask", *args], capture_output=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def test_serve_without_scheduler_starts_reads_and_stops(tmp_path, taef2_dir, dask_env):
    from lbdask.models import load_model

    dest = str(tmp_path / "arc")
    ids = build_serving_archive(dest, load_model("taef2", weights=taef2_dir, device="cpu"), n=3)
    log = tmp_path / "stderr.txt"   # a file, not a pipe: the cluster's logging can never block on it
    proc = subprocess.Popen([sys.executable, "-m", "lbdask", "serve", dest, "--workers", "2", "--model", "taef2",
                             "--weights", str(taef2_dir)],
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=dask_env)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        served = re.fullmatch(rf"serving {re.escape(dest)} on (tcp://\S+) \(2 workers\)\n", first)
        assert served, (first, second, log.read_text())
        address = served.group(1)
        link = re.fullmatch(r"dashboard: (http://\S+/lbdask/serving)\n", second)
        assert link, second
        page = urllib.request.urlopen(link.group(1), timeout=30).read().decode()
        assert "2 serving worker(s)" in page

        local = lbdask.open(dest, weights=taef2_dir)
        with lbdask.open(dest, scheduler=address) as box:
            assert box.read_many(ids) == [local.read(i) for i in ids]
        for image_id in ("rgba.png", "kept.png"):   # a latent and a kept original, through the CLI
            plain = _lbdask("read", dest, image_id, "--weights", str(taef2_dir), env=dask_env)
            assert _lbdask("read", dest, image_id, "--scheduler", address, env=dask_env) == plain

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        assert "serving runtime removed" in proc.stdout.read()
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
