"""`lbdask migrate` end to end against real `dask scheduler` / `dask worker` processes.

Covers the outcome of every kind of input, chunk preservation, idempotent reruns, and
kill -9 of a worker and of the driver mid-run (folder and S3 destinations): every input
ends up committed exactly once and batch objects committed before the kill are untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lbdask
from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.history import read_job_records
from lbdask.archive.meta import row_chunks
from lbdask.archive.rows import load_rows
from lbdask.image import pngio
from lbdask.storage import open_location
from tests.support.cluster import (
    grainy,
    migrate_argv,
    migrate_cmd,
    one_worker_cluster,
    png_bytes,
    smooth,
    subprocess_env,
    write_grainy_source,
)

pytestmark = pytest.mark.slow

CORPUS_CROPS = ["flux_girl_in_field.png", "sd3_sd3_simple_example.png"]


@pytest.fixture(scope="module")
def cluster(s3_server):
    """One scheduler and worker for the module (a test that kills the worker starts another),
    started after the S3 server: they inherit its AWS_* environment."""
    with one_worker_cluster(subprocess_env()) as procs:
        yield procs


def lbdask_out(argv: list[str]) -> str:
    """What `lbdask ARGV` run in this process prints (exit 0): for the commands whose output is
    checked here, not their start as a program (each has a real-process test)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return out.getvalue()


def _bomb(side: int = 9500) -> bytes:
    """A tiny file declaring 90 M pixels: above Pillow's decompression-bomb limit."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * side)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return pngio.PNG_SIGNATURE + b"".join(
        pngio.chunk_bytes(pngio.PngChunk(t, d)) for t, d in (("IHDR", ihdr), ("IDAT", body), ("IEND", b"")))


def make_mixed_source(root: Path, corpus: Path) -> dict[str, tuple[str, str | None]]:
    """Write one PNG of every kind below `root`; returns id -> expected (status, reason or None)."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, tuple[str, str | None]] = {}
    for name in CORPUS_CROPS:  # real files, downscaled, text chunks kept
        data = (corpus / name).read_bytes()
        rgb, _ = pngio.decode(data, 10**8)
        small = np.asarray(Image.fromarray(rgb).resize((96, 64), Image.LANCZOS))
        (root / name).write_bytes(pngio.encode(small, None, pngio.probe(data).chunks))
        expected[name] = ("latent", None)
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "grainy.png").write_bytes(png_bytes(grainy(1)))
    expected["nested/deeper/grainy.png"] = ("latent", None)
    rgba = np.dstack([grainy(2), np.full((64, 64), 255, np.uint8)])
    (root / "opaque_rgba.png").write_bytes(png_bytes(rgba))
    expected["opaque_rgba.png"] = ("latent", None)
    (root / "flat.png").write_bytes(png_bytes(smooth(8)))  # deflates to ~400 B: no latent is that small
    expected["flat.png"] = ("kept", "no-saving")
    rgba_t = rgba.copy()
    rgba_t[:10, :10, 3] = 0
    (root / "transparent.png").write_bytes(png_bytes(rgba_t))
    expected["transparent.png"] = ("kept", "transparency")
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (root / "noise.png").write_bytes(png_bytes(noise))
    expected["noise.png"] = ("kept", "fidelity")
    (root / "grey.png").write_bytes(png_bytes(smooth(4)[:, :, 0]))
    expected["grey.png"] = ("kept", "greyscale")
    (root / "grey16.png").write_bytes(png_bytes(np.full((64, 64), 40000, np.uint16)))
    expected["grey16.png"] = ("kept", "16-bit")
    pal = Image.fromarray(smooth(5)).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    (root / "palette.png").write_bytes(buf.getvalue())
    expected["palette.png"] = ("kept", "palette")
    (root / "tiny.png").write_bytes(png_bytes(smooth(6, 16)))
    expected["tiny.png"] = ("kept", "too-small")
    (root / "wide.png").write_bytes(png_bytes(np.repeat(smooth(7, 64), 3, axis=1)))  # 192 x 64 > max-pixels
    expected["wide.png"] = ("kept", "too-large")
    (root / "truncated.png").write_bytes(png_bytes(noise)[:500])
    expected["truncated.png"] = ("failed", None)
    (root / "not_a_png.png").write_bytes(b"this is text, not an image\n")
    expected["not_a_png.png"] = ("failed", None)
    (root / "bomb.png").write_bytes(_bomb())
    expected["bomb.png"] = ("failed", None)
    (root / "notes.txt").write_text("ignored: not a .png")
    outside = root.parent / "outside-src"
    outside.mkdir(exist_ok=True)
    (outside / "secret.png").write_bytes(png_bytes(grainy(9)))
    (root / "escape.png").symlink_to(outside / "secret.png")
    expected["escape.png"] = ("refused", None)
    return expected


def assert_drr_from_file_sizes(dest: str, src: Path, expected: dict[str, tuple[str, str | None]]) -> None:
    """`report --json`: DRR over every stored input, from the sizes of the files themselves."""
    rep = json.loads(lbdask_out(["report", dest, "--json"]))
    stored_ids = [i for i, (status, _) in expected.items() if status != "refused"]
    source = sum((src / i).stat().st_size for i in stored_ids)
    on_disk = sum(f.stat().st_size for part in ("latents", "originals", "catalog", "meta")
                  for f in (Path(dest) / part).rglob("*") if f.is_file())
    assert rep["bytes_source"] == source and rep["bytes_stored"] == on_disk
    assert rep["drr"] == pytest.approx(1 - on_disk / source)
    reps = rep["representations"]
    for status, name in (("latent", "latent"), ("kept", "png"), ("failed", "failed"), ("refused", "refused")):
        ids = [i for i, (s, _) in expected.items() if s == status]
        assert reps[name]["images"] == len(ids)
        if status in ("kept", "failed"):  # stored as their own bytes (kept format png)
            assert reps[name]["bytes_stored"] == reps[name]["bytes_source"] == sum((src / i).stat().st_size for i in ids)
    assert sum(part["bytes_stored"] for part in reps.values()) == on_disk
    assert rep["images_refused"] == 1 and list(rep["refused_reasons"])[0].startswith("symlink pointing outside SRC")


def committed_batches(dest: str) -> dict[str, tuple[object, list[str]]]:
    """Not-yet-compacted batch object name -> (modification marker, ids in it), read from the store."""
    loc = open_location(dest)
    folder = loc.path("catalog", "batches")
    loc.fs.invalidate_cache()
    try:
        infos = loc.fs.ls(folder, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for info in infos:
        name = info["name"]
        if not name.endswith(".jsonl.gz"):
            continue
        marker = info.get("ETag") or info.get("mtime") or info.get("LastModified")
        out[name.rsplit("/", 1)[-1]] = (marker, [r.id for r in load_rows(loc.fs.cat_file(name))])
    return out


def stored_objects(dest: str) -> dict[str, object]:
    """Every object of the archive -> its modification marker (ETag or mtime)."""
    loc = open_location(dest)
    loc.fs.invalidate_cache()
    found = loc.fs.find(loc.root, detail=True)
    return {path: info.get("ETag") or info.get("mtime") or info.get("LastModified") for path, info in found.items()}


def committed_payload(dest: str, rows_by_batch: dict[str, list[dict]]) -> dict[str, object]:
    """The shard and kept-original objects that the given committed rows point at -> modification marker.

    Only committed objects are promised never to be rewritten: a batch killed between writing its
    shard and committing it is redone, and may write the same fresh shard again.
    """
    loc, shard_size = open_location(dest), Archive.open(dest).shard_size
    keys = set()
    for rows in rows_by_batch.values():
        for row in rows:
            if row["bucket"] is not None:
                keys.add(loc.path("latents", row["bucket"], "c", str(row["index"] // shard_size), "0", "0", "0"))
            if row["original"] is not None:
                keys.add(loc.path(row["original"]["key"]))
    found = stored_objects(dest)
    assert keys and keys <= set(found), sorted(keys - set(found))
    return {k: found[k] for k in keys}


def catalog_by_batch(dest: str) -> dict[str, list[dict]]:
    """batch id -> its rows as dicts, through the archive (index partitions + batch objects)."""
    out: dict[str, list[dict]] = {}
    for row in Archive.open(dest).rows():
        out.setdefault(row.batch_id, []).append(row.to_json())
    return {k: sorted(v, key=lambda r: r["id"]) for k, v in out.items()}


def wait_for_commits(dest: str, n: int, proc: subprocess.Popen, timeout: float = 300) -> dict:
    """The batch objects once `n` are committed; a bound for a hung job only (a driver's start
    alone took 75 s on the shared machine at load 40)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = committed_batches(dest)
        if len(batches) >= n:
            return batches
        assert proc.poll() is None, f"migrate exited early with {proc.returncode}"
        time.sleep(0.1)
    raise TimeoutError(f"no {n} committed batches in {dest}")


def assert_exactly_once(dest: str, ids: set[str]) -> dict[str, list[dict]]:
    batches = catalog_by_batch(dest)
    counts = Counter(r["id"] for rows in batches.values() for r in rows)
    assert set(counts) == ids
    assert all(c == 1 for c in counts.values()), {i: c for i, c in counts.items() if c != 1}
    return batches


def assert_untouched_after_kill(dest: str, first_rows: dict[str, list[dict]], payload: dict[str, object]) -> None:
    """Rows committed before the kill are unchanged, and no object they point at was rewritten."""
    now_rows = catalog_by_batch(dest)
    for batch_id, rows in first_rows.items():
        assert now_rows[batch_id] == rows
    assert committed_payload(dest, first_rows) == payload


@contextlib.contextmanager
def migration_after_first_commit(cmd: list[str], env: dict[str, str], dest: str):
    """Start `cmd`, wait until it commits a batch, and yield (driver, rows so far, their objects);
    the driver is killed on exit if it is still running."""
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_commits(dest, 1, driver)
        first = catalog_by_batch(dest)
        yield driver, first, committed_payload(dest, first)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def assert_second_run_writes_nothing(argv: list[str], dest: str) -> None:
    """A complete archive: running the same `lbdask` arguments again (in this process) says so
    and leaves every object untouched."""
    before = stored_objects(dest)
    assert "nothing to do" in lbdask_out(argv)
    assert stored_objects(dest) == before


def test_cli_migrates_every_kind_of_input_with_the_right_outcome(cluster, corpus_dir, taef2_dir, tmp_path, dask_env):
    src, dest = tmp_path / "src", str(tmp_path / "archive")
    expected = make_mixed_source(src, corpus_dir)
    done = subprocess.run(migrate_cmd(str(src), dest, cluster.address, "--batch-size", "4"),
                          env=dask_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r.id: r for r in Archive.open(dest).rows()}
    assert set(rows) == set(expected)
    for image_id, (status, reason) in expected.items():
        row = rows[image_id]
        assert row.status == status, (image_id, row.status, row.reason)
        if reason is not None:
            assert row.reason == reason, (image_id, row.reason)
        if status == "failed":
            assert row.reason  # a one-line reason
    assert "decompression bomb" in rows["bomb.png"].reason
    arc = Archive.open(dest)
    for name in CORPUS_CROPS:  # text chunks kept byte for byte, beside the row (lbdask.archive.meta)
        assert row_chunks(arc, rows[name]) == [tuple(c) for c in pngio.probe((src / name).read_bytes()).chunks]
        assert rows[name].chunks == [] and rows[name].chunks_ref is not None
    for row in rows.values():
        if row.status == "latent":
            assert row.psnr >= 20 and row.model_fingerprint and row.device_class and row.bits == 8
            assert arc.read_latent(row).data.shape[0] == arc.model_info["latent_channels"]
        elif row.status == "kept":  # kept originals are byte-identical to the source
            assert arc.read_original(row) == (src / row.id).read_bytes()
    assert rows["noise.png"].psnr < 20
    assert rows["escape.png"].reason.startswith("symlink pointing outside SRC")
    assert rows["escape.png"].original is None and rows["escape.png"].stored_bytes == 0
    failed = sorted(i for i, (status, _) in expected.items() if status == "failed")
    for image_id in failed:  # raw bytes kept byte-identical: the archive can replace its source
        assert arc.read_original(rows[image_id]) == (src / image_id).read_bytes()
        assert rows[image_id].stored_bytes == (src / image_id).stat().st_size
    assert_drr_from_file_sizes(dest, src, expected)
    assert "DRR" in done.stdout and "refused 1" in done.stdout
    listed = lbdask_out(["ls", dest, "--status", "failed"])
    assert sorted(line.split("\t")[0] for line in listed.splitlines()[1:]) == failed
    raw = subprocess.run([sys.executable, "-m", "lbdask", "read", dest, "truncated.png"], env=dask_env,
                         capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout == (src / "truncated.png").read_bytes()
    assert raw.stderr.decode().count("\n") == 1 and b"not a decodable PNG" in raw.stderr
    checked = subprocess.run([sys.executable, "-m", "lbdask", "verify", dest, "--sample", "0", "--weights",
                              str(taef2_dir)], env=dask_env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and f"{len(failed)} failed rows: 0 failure(s)" in checked.stdout, checked.stdout
    stats = read_job_records(arc)
    assert stats[-1]["images_processed"] == len(expected)
    assert stats[-1]["reasons"]["kept:transparency"] == 1
    assert sum(b["count"] for b in stats[-1]["psnr_histogram"]) == sum(r.status == "latent" for r in rows.values())
    latents = [r for r in rows.values() if r.status == "latent"]  # their decode hash is what `read` returns
    got = subprocess.run([sys.executable, "-m", "lbdask", "read", dest, latents[0].id, "--weights", str(taef2_dir)],
                         env=dask_env, capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr[-3000:]
    rgb, _ = pngio.decode(got.stdout, 10**8)
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == latents[0].decode_sha256
    reader = lbdask.open(dest, weights=taef2_dir)  # what `lbdask read` calls, its model loaded once
    for row in latents:  # every latent
        rgb, _ = pngio.decode(reader.read(row.id), 10**8)
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == row.decode_sha256, row.id
    assert_second_run_writes_nothing(migrate_argv(str(src), dest, cluster.address), dest)
    assert len(read_job_records(arc)) == len(stats)


def killable_argv(src: str, dest: str, scheduler: str) -> list[str]:
    """A migration of 10 images in 5 batches of 2 (`write_grainy_source`), each batch slowed by
    refinement steps so that the job can be killed between commits: 10 steps (about 2 s of CPU
    a batch on one thread; at load 30, 3 or 4 batches were left when the test first saw a
    commit) instead of 25, whose 5 s a batch only made the rest of the job longer."""
    return migrate_argv(src, dest, scheduler, "--batch-size", "2", "--batch-pixels", "0", "--refine-steps", "10")


@pytest.mark.parametrize("victim", ["worker", "driver"])
def test_kill_minus_9_mid_run_then_resume(victim, cluster, taef2_dir, tmp_path, dask_env):
    ids = write_grainy_source(tmp_path / "src", 10)
    dest = str(tmp_path / "archive")
    argv = killable_argv(str(tmp_path / "src"), dest, cluster.address)
    cmd = [sys.executable, "-m", "lbdask", *argv]
    with migration_after_first_commit(cmd, dask_env, dest) as (driver, first, payload):
        if victim == "worker":
            os.kill(cluster.workers[-1].pid, signal.SIGKILL)
            cluster.start_worker()
            driver_out, err = driver.communicate(timeout=240)
            assert driver.returncode == 0, err[-3000:]
        else:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
            assert sum(len(m) for m in catalog_by_batch(dest).values()) < len(ids), "job finished before the kill"
            rerun = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=240)
            assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exactly_once(dest, ids)
    assert_untouched_after_kill(dest, first, payload)
    rows = list(Archive.open(dest).rows())
    assert {r.status for r in rows} == {"latent"}
    assert all(r.refine_steps > 0 and r.psnr_initial is not None and r.decode_sha256 for r in rows)
    assert not committed_batches(dest), "the end of the job folds batch objects into the index"
    report = json.loads(lbdask_out(["report", dest, "--json"]))
    health = read_job_records(Archive.open(dest))[-1]["cluster"]  # the job that finished
    assert health["workers_lost"] == (1 if victim == "worker" else 0)
    assert (health["tasks_retried"] > 0) == (victim == "worker")
    assert health["peak_worker_memory"] > 100 * 2**20  # a worker holding TAEF2
    assert report["cluster"]["workers_lost"] == health["workers_lost"]
    if victim == "worker":
        assert "1 worker(s) lost or restarted" in driver_out
    refinement = report["refinement"]
    assert refinement["images"] == len(ids) and refinement["seconds"] > 0
    assert refinement["after"]["psnr_mean"] > refinement["before"]["psnr_mean"]
    assert_second_run_writes_nothing(argv, dest)


def test_kill_driver_with_s3_destination_then_resume(s3_bucket, cluster, taef2_dir, tmp_path, dask_env):
    assert dask_env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1")
    ids = write_grainy_source(tmp_path / "src", 10)
    dest = f"{s3_bucket}/archive"
    argv = killable_argv(str(tmp_path / "src"), dest, cluster.address)
    cmd = [sys.executable, "-m", "lbdask", *argv]
    with migration_after_first_commit(cmd, dask_env, dest) as (driver, first, payload):
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    rerun = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exactly_once(dest, ids)
    assert_untouched_after_kill(dest, first, payload)  # same ETags: nothing written again
    assert_second_run_writes_nothing(argv, dest)
