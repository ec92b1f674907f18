"""`lbdask retier --apply --scheduler ADDR` beside `lbdask serve` on real `dask scheduler` /
`dask worker` processes: the serving cluster's reads follow the retier, and the scheduler's
dashboard shows the retier's tasks.

One worker serves the archive and runs the retier's tasks. Most ids are read through the
cluster (and so cached) before the retier; two are read only after it. Run 1 promotes l0
(pixel tier); run 2 re-encodes every latent to model Y (l0's pixel copy is swept) and
demotes the cold kept PNGs (their kept objects are swept). After run 2 every id read through
the cluster (`lbdask.open(DEST, scheduler=)` and `lbdask read --scheduler`) must equal plain
`lbdask read` within the serving workers' `catalog_refresh_s` (serve.freshness), never a
read error and never the bytes of before.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

import lbdask
from lbdask import cli
from lbdask.archive import Archive
from tests.support.cluster import TAEF2_WEIGHTS, DaskProcesses, free_port, subprocess_env
from tests.support.dashboard import get_page, span_view
from tests.support.retier import read_all, record_reads, write_model_y_configs, write_policy

pytestmark = pytest.mark.slow

NEVER_CACHED = ("l2.png", "k2.png")   # read through the cluster only after the retier
REFRESH_S = 0.5                       # the serving workers' catalog_refresh_s here
PROMOTE = "demote: {enabled: false}\npromote: {enabled: true, window_days: 7, min_reads: 3, cold_days: 30}\n"
REENCODE_AND_DEMOTE = ("batch_size: 2\ndemote: {enabled: true, cold_days: 90, min_psnr: 20}\npromote: {enabled: false}\n"
                       "reencode: {enabled: true, from: taef2, to: taef2-y, min_psnr: 20}\n")


@dataclass
class Retiered:
    dest: str
    procs: DaskProcesses
    dashboard_port: int
    before: dict[str, bytes]        # lbdask read of every id after run 1, before run 2
    served_before: dict[str, bytes]  # what the cluster served (and cached) then
    after: dict[str, bytes]         # lbdask read of every id after run 2
    converged_s: float              # seconds after run 2 until the cluster served `after` for every id
    apply_out: subprocess.CompletedProcess


def retier_cmd(dest: str, scheduler: str, policy: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lbdask", "retier", dest, "--policy", policy, "--apply", "--scheduler", scheduler,
            "--weights", str(TAEF2_WEIGHTS), *extra]


def serve_until_equal(dest: str, scheduler: str, expected: dict[str, bytes], timeout: float) -> float:
    """Read every id through the cluster until all equal `expected`; seconds it took."""
    t0 = time.monotonic()
    ids = sorted(expected)
    with lbdask.open(dest, scheduler=scheduler) as box:
        while True:
            got = dict(zip(ids, box.read_many(ids)))
            if got == expected:
                return time.monotonic() - t0
            stale = sorted(i for i in ids if got[i] != expected[i])
            assert time.monotonic() - t0 < timeout, f"still served the bytes of before the retier: {stale}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def retiered(retier_archive, tmp_path_factory):
    _, dest0 = retier_archive
    tmp = tmp_path_factory.mktemp("retier-serving")
    dest = str(tmp / "arc")
    shutil.copytree(dest0, dest)
    serve_yaml = write_policy(tmp / "serve.yaml", f"worker:\n  catalog_refresh_s: {REFRESH_S}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LBDASK_CONFIG_DIR", str(write_model_y_configs(tmp / "configs")))  # workers load taef2-y by name
        env = subprocess_env()
        port = free_port()
        procs = DaskProcesses(env, dashboard_port=port)
        serve = None
        try:
            procs.start_worker()
            procs.wait_workers(1)
            serve = subprocess.Popen([sys.executable, "-m", "lbdask", "serve", dest, "--scheduler", procs.address,
                                      "--weights", str(TAEF2_WEIGHTS), "--config", serve_yaml],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            assert serve.stdout.readline().startswith(f"serving {dest} on {procs.address}")
            record_reads(dest, {"l0.png": (5, time.time())})
            run1 = subprocess.run(retier_cmd(dest, procs.address, write_policy(tmp / "promote.yaml", PROMOTE),
                                             "--no-progress"), env=env, capture_output=True, text=True, timeout=300)
            assert run1.returncode == 0, run1.stderr[-3000:]
            assert Archive.open(dest).get_row("l0.png").pixel is not None
            before = read_all(dest)
            cached = sorted(set(before) - set(NEVER_CACHED))
            with lbdask.open(dest, scheduler=procs.address) as box:
                served_before = dict(zip(cached, box.read_many(cached)))
            get_page(port, "/individual-task-stream")  # a dashboard page open: the task stream records tasks
            later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S")
            run2 = subprocess.run(retier_cmd(dest, procs.address, write_policy(tmp / "p.yaml", REENCODE_AND_DEMOTE),
                                             "--now", later),  # a year on: every kept PNG is cold
                                  env=env, capture_output=True, text=True, timeout=300)
            assert run2.returncode == 0, run2.stderr[-3000:]
            after = read_all(dest)
            converged = serve_until_equal(dest, procs.address, after, timeout=30)
            yield Retiered(dest, procs, port, before, served_before, after, converged, run2)
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=60)
            procs.close()


def test_the_retier_changed_cached_ids_of_every_kind(retiered):
    rows = {r.id: r for r in Archive.open(retiered.dest).rows()}
    y = {r.model_fingerprint for i, r in rows.items() if i.startswith("l")}
    assert len(y) == 1 and rows["l0.png"].pixel is None and rows["l0.png"].reencoded["copy"] == "pixel"
    demoted = [i for i in ("k0.png", "k1.png", "crop0.png") if rows[i].status == "latent"]
    assert demoted and rows["k2.png"].status == "latent"
    # the cluster had cached bytes that are no longer what `lbdask read` gives: a pixel copy
    # (swept), a kept PNG (swept) and a latent of model X (re-encoded)
    for image_id in ("l0.png", "l1.png", demoted[0]):
        assert retiered.served_before[image_id] == retiered.before[image_id] != retiered.after[image_id], image_id


def cli_read(path: Path, *argv: str) -> bytes:
    """What `lbdask read ARGV` run in this process writes (`-o path`): the command's own code;
    its start as a program with `--scheduler` is test_serve_embedded's."""
    assert cli.main(["read", *argv, "-o", str(path)]) == 0
    return path.read_bytes()


def test_serving_reads_converge_to_lbdask_read_after_the_retier(retiered, tmp_path):
    assert retiered.converged_s < 30   # serve_until_equal: every id, cached before or not
    with lbdask.open(retiered.dest, scheduler=retiered.procs.address) as box:
        for image_id, png in retiered.after.items():
            assert box.read(image_id) == png, image_id
    for image_id, png in retiered.after.items():
        assert cli_read(tmp_path / "s.png", retiered.dest, image_id, "--scheduler", retiered.procs.address) == png, image_id
    for image_id in ("l0.png", "k0.png"):   # `after` is what plain `lbdask read` prints
        assert cli_read(tmp_path / "p.png", retiered.dest, image_id, "--weights", str(TAEF2_WEIGHTS)) == \
            retiered.after[image_id], image_id
    with Client(retiered.procs.address, timeout="20s") as client:
        stats = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
    assert sum(s["catalog_dropped"] for s in stats.values()) >= len(retiered.served_before) - 1


def test_the_dashboard_shows_the_retier_tasks_and_span_and_the_terminal_a_progress_bar(retiered):
    kinds = {"retier-reencode", "retier-demote"}
    err = retiered.apply_out.stderr
    assert f"dashboard: http://127.0.0.1:{retiered.dashboard_port}/status" in err
    assert "retier: 100%" in err and "8/8" in err   # the terminal progress bar (tqdm), over the 8 moves
    with Client(retiered.procs.address, timeout="20s") as client:
        assert kinds <= set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))
        spans = client.run_on_scheduler(span_view)
        assert kinds <= set(spans["lbdask-retier"]["prefixes"])
        assert any(m.startswith("execute/retier-reencode/") for m in spans["lbdask-retier"]["metrics"])
        # what the dashboard's task stream draws (its page was open during the run)
        streamed = client.run_on_scheduler(
            lambda dask_scheduler: [t["key"] for t in dask_scheduler.plugins["task-stream"].buffer])
    assert kinds <= {str(k).rsplit("-", 1)[0] for k in streamed}, streamed
    status, kind, text = get_page(retiered.dashboard_port, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    done = {s.labels["task_prefix_name"]: s.value for s in families["dask_scheduler_prefix_state_totals"].samples
            if s.labels.get("state") == "memory"}   # tasks of each prefix that finished (entered memory)
    assert all(done.get(k, 0) >= 1 for k in kinds), done
    for page in ("/status", "/individual-task-stream", "/individual-progress"):
        status, kind, _ = get_page(retiered.dashboard_port, page)
        assert status == 200 and kind.startswith("text/html"), page
