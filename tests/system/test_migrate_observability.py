"""What docs/migration.md promises about watching and placing a migration, checked on real processes.

1. Without --scheduler the CLI starts its own LocalCluster, finishes, and leaves no process behind.
2. The scheduler and its dashboard show the task prefixes, the spans and the context_meter labels,
   and the dashboard serves Prometheus metrics and its pages over HTTP.
3. With a worker advertising GPU next to a CPU-only one, every encode task runs on the GPU worker.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import cloudpickle
import psutil
import pytest
from dask.utils import key_split
from distributed import Client, get_task_stream
from prometheus_client.parser import text_string_to_metric_families

from lbdask.archive import Archive
from lbdask.archive.history import read_job_records
from tests.support.cluster import DaskProcesses, free_port, migrate_cmd, subprocess_env, write_grainy_source
from tests.support.dashboard import get_page, span_view
from tests.support.malloc_probe import SIZE, has_mallinfo2, large_tensor_probe

pytestmark = pytest.mark.slow

BATCH_PREFIXES = {"read-png", "encode", "write-shard"}

# the scheduler cannot import this test module: ship its functions (for run_on_scheduler) by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules["tests.support.malloc_probe"])


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cluster_processes(seen: dict[int, tuple[psutil.Process, str]]) -> list[psutil.Process]:
    """The driver's children that belong to the cluster (not multiprocessing's resource tracker)."""
    return [proc for proc, cmdline in seen.values() if "resource_tracker" not in cmdline]


def test_cli_without_scheduler_starts_and_removes_its_own_local_cluster(taef2_dir, tmp_path, dask_env):
    ids = write_grainy_source(tmp_path / "src", 4)
    dest = str(tmp_path / "archive")
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        driver = subprocess.Popen(migrate_cmd(str(tmp_path / "src"), dest, None, "--workers", "1", "--batch-size", "2"),
                                  env={**dask_env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=err)
    seen: dict[int, tuple[psutil.Process, str]] = {}  # every process the driver started, with its command line
    alive_at_summary: list[psutil.Process] | None = None
    try:
        parent = psutil.Process(driver.pid)
        deadline = time.monotonic() + 180
        while driver.poll() is None:
            assert time.monotonic() < deadline, "migrate with its own local cluster did not finish in 180 s"
            try:
                for child in parent.children(recursive=True):
                    if child.pid not in seen:
                        seen[child.pid] = (child, " ".join(child.cmdline()))
            except psutil.NoSuchProcess:
                pass
            if alive_at_summary is None and stdout.stat().st_size:  # the summary is printed after the job
                alive_at_summary = [p for p in _cluster_processes(seen) if _alive(p)]
            time.sleep(0.05)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr.read_text()[-3000:]
    assert _cluster_processes(seen), "no worker process was started"
    # the job closed its cluster itself, before printing the summary (not only at interpreter exit) ...
    assert alive_at_summary == [], alive_at_summary
    # ... and nothing the driver started outlives it
    _, alive = psutil.wait_procs([proc for proc, _ in seen.values()], timeout=5)
    assert not alive, [seen[p.pid][1] for p in alive]
    assert "migrated 4 of 4 images" in stdout.read_text()
    arc = Archive.open(dest)
    rows = list(arc.rows())
    assert sorted(r.id for r in rows) == sorted(ids)
    assert all(r.status != "failed" and r.psnr is not None for r in rows)  # each one encoded by the cluster
    job = read_job_records(arc)[-1]
    assert job["workers"] == 1
    # the job's time is split into start-up, scan and batches, and the steady rate leaves out start-up
    phases = job["phase_seconds"]
    assert set(phases) == {"start", "scan", "batches"} and all(v > 0 for v in phases.values())
    assert sum(phases.values()) <= job["seconds"]
    assert job["batch_images_per_s"] == pytest.approx(4 / phases["batches"], rel=1e-3)
    assert f"batches {phases['batches']:.1f} s" in stdout.read_text()


@dataclass
class ObservedRun:
    """A finished migration on a scheduler with a dashboard, one GPU-advertising and one CPU-only worker."""

    client: Client
    dashboard_port: int
    gpu_worker: str
    task_stream: list[dict]
    batches: int


def _wait_for_metrics(client: Client, label: str, timeout: float = 30) -> None:
    """Fine metrics reach the scheduler with worker heartbeats, shortly after the tasks end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.cumulative_worker_metrics])
        if any(label in k for k in keys):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no {label!r} metric reached the scheduler")


@pytest.fixture(scope="module")
def observed_run(tmp_path_factory, taef2_dir):
    root = tmp_path_factory.mktemp("observed")
    images, batch_size = 8, 2
    write_grainy_source(root / "src", images)
    env = subprocess_env()
    port = free_port()
    procs = DaskProcesses(env, dashboard_port=port)
    try:
        procs.start_worker("GPU=1")
        procs.start_worker()
        procs.wait_workers(2)
        with Client(procs.address, timeout="20s") as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            gpu = [a for a, w in workers.items() if w.get("resources", {}).get("GPU")]
            assert len(gpu) == 1 and len(workers) == 2
            with get_task_stream(client) as stream:
                done = subprocess.run(
                    migrate_cmd(str(root / "src"), str(root / "archive"), procs.address, "--batch-size", str(batch_size),
                            "--batch-pixels", "0"),
                    env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stderr[-3000:]
            _wait_for_metrics(client, "vae-encode")
            yield ObservedRun(client, port, gpu[0], stream.data, images // batch_size)
    finally:
        procs.close()


def test_scheduler_and_dashboard_show_task_names_spans_and_fine_metrics(observed_run):
    client = observed_run.client
    prefixes = set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))
    assert {"scan-png"} | BATCH_PREFIXES <= prefixes
    spans = client.run_on_scheduler(span_view)
    assert {"lbdask-migrate", "lbdask-migrate/scan", "lbdask-migrate/batches"} <= set(spans)
    assert "scan-png" in spans["lbdask-migrate/scan"]["prefixes"]
    assert BATCH_PREFIXES <= set(spans["lbdask-migrate/batches"]["prefixes"])
    assert set(spans["lbdask-migrate"]["prefixes"]) >= {"scan-png"} | BATCH_PREFIXES  # parent covers both
    metrics = set(spans["lbdask-migrate/batches"]["metrics"])
    for prefix, label in [("read-png", "fetch-source"), ("read-png", "decode-png"), ("encode", "vae-encode"),
                          ("encode", "quantise"), ("encode", "verify-decode"), ("write-shard", "commit")]:
        assert f"execute/{prefix}/{label}/seconds" in metrics, (prefix, label, sorted(metrics))
    assert "execute/scan-png" not in " ".join(metrics)  # scan tasks are accounted to the scan span

    status, kind, text = get_page(observed_run.dashboard_port, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "dask_scheduler_tasks" in families
    compute = {s.labels.get("task_prefix_name"): s.value
               for s in families["dask_scheduler_tasks_compute_seconds"].samples}
    assert all(compute.get(p, 0) > 0 for p in {"scan-png"} | BATCH_PREFIXES), compute
    for page in ("/status", "/individual-task-stream", "/individual-fine-performance-metrics"):
        status, kind, _ = get_page(observed_run.dashboard_port, page)
        assert status == 200 and kind.startswith("text/html"), page


def test_encode_runs_only_on_the_gpu_worker(observed_run):
    ran: dict[str, list[str]] = {}
    for task in observed_run.task_stream:
        ran.setdefault(key_split(task["key"]), []).append(task["worker"])
    assert len(ran["encode"]) == observed_run.batches
    assert set(ran["encode"]) == {observed_run.gpu_worker}
    # the restriction is what put them there: some batches were PNG-decoded on the CPU-only worker
    assert set(ran["read-png"]) - {observed_run.gpu_worker}, ran["read-png"]


def _worker_env() -> dict[str, str]:
    import os

    import torch

    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch_threads": str(torch.get_num_threads())}


@pytest.mark.skipif(not has_mallinfo2(), reason="needs glibc >= 2.33")
def test_embedded_cluster_workers_use_all_their_threads_and_keep_freed_tensor_memory():
    """Dask's default worker environment (1 OpenMP thread, MALLOC_TRIM_THRESHOLD_) halves CPU encode
    speed, and glibc's default mmap per large tensor costs as much again (docs/benchmarks.md)."""
    from lbdask.cluster.connect import local_cluster
    from lbdask.cluster.settings import load_cluster_settings

    settings = load_cluster_settings()
    with local_cluster(settings, n_workers=1) as cluster, Client(cluster) as client:
        (env,) = client.run(_worker_env).values()
        threads = next(iter(client.nthreads().values()))
        # in a task thread, before any model is loaded: no mmap of its own, memory kept once freed
        probe = client.submit(large_tensor_probe, pure=False).result()
    assert env["OMP_NUM_THREADS"] == str(threads) == env["torch_threads"]
    assert probe["mmapped_during"] < SIZE
    assert probe["free_in_heap_after"] >= SIZE
