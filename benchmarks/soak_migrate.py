"""Soak test of the whole migration path on real data (not CI): kills, resume, full read-back.

    python benchmarks/soak_migrate.py [--limit N | --smallest N] [--kill-every S] [--batch-size N] [--markdown FILE]

Copies the shared corpus (all of it, N files evenly spaced by name, or the N smallest) into a fresh SRC, adds inputs that
cannot be converted (a truncated PNG, a text file named .png) and a symlink pointing out of
SRC, and migrates it with `lbdask migrate --scheduler` against real `dask scheduler` /
`dask worker` processes (tests/support/cluster.py). While the job runs, a worker is killed
with SIGKILL at random every ~S seconds (uniform in [S/2, 3S/2]; skipped while no input was
committed since the previous kill, so that a loaded machine still ends) and a fresh one started;
the driver is killed once (SIGKILL) after its first commits, and the same command is run
again until it exits 0. Then it checks, against SRC itself:
  - every input is in the archive exactly once: the ids of the catalog are exactly the
    listing of SRC, one row each, no two latent rows share a shard slot, and every row's
    batch was committed (folded) once;
  - kept PNGs and failed inputs read back byte-identical (sha256 checked on read as well);
  - every latent decodes (`lbdask.open(DEST).read`) to the recorded PSNR against its
    source, within the same-device tolerance of `lbdask verify`, and to the recorded
    decode sha256;
  - the symlink out of SRC is refused with its reason, and nothing of its target is stored.
Prints a markdown report (machine, date, kills, resumes, per-job restarts / retries / peak
memory, DRR, checks) and exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support

from lbdask.api import open as open_archive  # noqa: E402
from lbdask.archive import Archive  # noqa: E402
from lbdask.archive.history import read_job_records  # noqa: E402
from lbdask.archive.summary import summarize  # noqa: E402
from lbdask.image import pngio  # noqa: E402
from lbdask.image.quality import psnr  # noqa: E402
from lbdask.latent.decode import decode_sha256  # noqa: E402
from lbdask.representation.sources import list_source_ids  # noqa: E402
from lbdask.storage import open_location  # noqa: E402
from lbdask.verify import SAME_DEVICE_TOLERANCE_DB  # noqa: E402
from tests.support.cluster import SHARED, TAEF2_WEIGHTS, DaskProcesses, subprocess_env  # noqa: E402

CORPUS = SHARED / "corpus" / "ai-png"


def corpus_files(limit: int | None, smallest: int | None) -> list[Path]:
    """All corpus files, `limit` of them evenly spaced by name, or the `smallest` by pixels."""
    files = sorted(CORPUS.glob("*.png"))
    if smallest:
        return sorted(files, key=lambda f: (pngio.probe(f.read_bytes()).width * pngio.probe(f.read_bytes()).height,
                                            f.name))[:smallest]
    if limit and limit < len(files):
        files = [files[round(i * (len(files) - 1) / max(1, limit - 1))] for i in range(limit)]
    return files


def build_source(root: Path, files: list[Path]) -> tuple[Path, int]:
    """SRC: the corpus files, two unconvertible inputs and one symlink out of SRC."""
    src = root / "src"
    src.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, src / f.name)
    (src / "bad").mkdir()
    (src / "bad" / "truncated.png").write_bytes(files[0].read_bytes()[:5000])
    (src / "bad" / "not_a_png.png").write_bytes(b"GIF89a - a different format under a .png name\n")
    outside = root / "outside"
    outside.mkdir()
    shutil.copyfile(files[-1], outside / "elsewhere.png")
    (src / "escape.png").symlink_to(outside / "elsewhere.png")
    return src, len(files) + 3


class WorkerKiller(threading.Thread):
    """Kill the running worker at random intervals and start a fresh one (like a nanny would).

    A kill is skipped (and counted in `skipped`) while nothing was committed since the
    previous one: on a loaded machine one large image can take longer to encode than the
    interval, and killing it again and again would never let the soak end.
    """

    def __init__(self, cluster: DaskProcesses, every: float, rng: random.Random, progress) -> None:
        super().__init__(daemon=True)
        self.cluster, self.every, self.rng, self.progress = cluster, every, rng, progress
        self.kills = self.skipped = 0
        self.stop = threading.Event()

    def run(self) -> None:
        seen = self.progress()
        while not self.stop.wait(self.rng.uniform(self.every / 2, 1.5 * self.every)):
            now = self.progress()
            if now == seen:
                self.skipped += 1
                continue
            seen = now
            alive = [w for w in self.cluster.workers if w.poll() is None]
            if alive:
                os.kill(self.rng.choice(alive).pid, signal.SIGKILL)
                self.kills += 1
            self.cluster.start_worker()


def committed_count(dest: str) -> int:
    try:
        return sum(1 for _ in Archive.open(dest).rows())
    except Exception:  # noqa: BLE001 - the archive may not exist yet
        return 0


def migrate_until_done(cmd: list[str], env: dict[str, str], dest: str, total: int, log) -> dict:
    """Run the driver, kill it once after a third of the inputs are committed, rerun until exit 0."""
    runs, driver_killed, failures = 0, False, []
    while runs < 12:
        runs += 1
        driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not driver_killed:
            while driver.poll() is None and committed_count(dest) < max(1, total // 3):
                time.sleep(2)
            if driver.poll() is None:
                driver.send_signal(signal.SIGKILL)
                driver.wait()
                driver_killed = True
                log(f"run {runs}: driver killed with {committed_count(dest)}/{total} inputs committed")
                continue
        out, err = driver.communicate()
        log(f"run {runs}: exit {driver.returncode}, {committed_count(dest)}/{total} inputs committed")
        if driver.returncode == 0:
            return {"runs": runs, "driver_killed": driver_killed, "failed_runs": failures, "last_stdout": out}
        failures.append(err.strip().splitlines()[-1] if err.strip() else f"exit {driver.returncode}")
    raise RuntimeError(f"migration did not complete in {runs} runs: {failures}")


def uncommitted(arc: Archive, rows: list) -> list[str]:
    """Rows whose batch is neither a committed batch object nor folded into the index.

    Asks the catalog (`batch_names` / `folded_names`) instead of listing its folders: the
    folded copies are named `<batch>.jsonl.gz`, and the last job's batches may still be
    batch objects, not yet folded.
    """
    committed = set(arc.catalog.batch_names()) | set(arc.catalog.folded_names())
    return [f"{r.id}: batch {r.batch_id} not committed" for r in rows if r.batch_id not in committed]


def check_archive(dest: str, src: Path, weights: Path) -> tuple[list[str], Counter]:
    """Every input once, read back as promised; returns failures and counts of what was checked."""
    problems: list[str] = []
    checked: Counter = Counter()
    arc = Archive.open(dest)
    rows = list(arc.rows())
    ids = Counter(r.id for r in rows)
    listing = list_source_ids(open_location(str(src)))
    expected = set(listing.sizes) | set(listing.refused)
    if set(ids) != expected:
        problems.append(f"ids differ from SRC: missing {sorted(expected - set(ids))}, extra {sorted(set(ids) - expected)}")
    problems += [f"{i}: {n} rows" for i, n in ids.items() if n != 1]
    slots = Counter((r.bucket, r.index) for r in rows if r.status == "latent")
    problems += [f"shard slot {s} holds {n} latents" for s, n in slots.items() if n != 1]
    problems += uncommitted(arc, rows)
    box = open_archive(dest, weights=weights, device="cpu")
    for r in sorted(rows, key=lambda r: r.id):
        checked[r.status] += 1
        try:
            if r.status in ("kept", "failed"):
                if box.read(r.id) != (src / r.id).read_bytes():
                    problems.append(f"{r.id}: {r.status} bytes differ from the source")
            elif r.status == "latent":
                data = (src / r.id).read_bytes()
                original, _ = pngio.decode(data, r.width * r.height)
                rgb, _ = pngio.decode(box.read(r.id), r.width * r.height)
                now = psnr(original, rgb)
                if abs(now - r.psnr) > SAME_DEVICE_TOLERANCE_DB:
                    problems.append(f"{r.id}: PSNR {now:.3f} dB, recorded {r.psnr:.3f} dB")
                if decode_sha256(rgb) != r.decode_sha256:
                    problems.append(f"{r.id}: decode differs from the recorded decode_sha256")
            elif not (r.status == "refused" and r.reason and r.original is None and r.stored_bytes == 0):
                problems.append(f"{r.id}: refused row without a reason, or with stored bytes")
        except Exception as exc:  # noqa: BLE001 - every row is checked; each failure is reported
            problems.append(f"{r.id}: {type(exc).__name__}: {exc}")
    return problems, checked


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="only N corpus files, evenly spaced by name (default: all)")
    ap.add_argument("--smallest", type=int, metavar="N", help="only the N corpus files with the fewest pixels")
    ap.add_argument("--kill-every", type=float, default=240.0, metavar="S",
                    help="mean seconds between worker kills (keep it well above one batch's encode time)")
    ap.add_argument("--batch-size", type=int, default=1, help="images per batch (small: progress between kills)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep SRC and DEST here (default: a temporary folder, removed)")
    ap.add_argument("--markdown", help="also write the report here")
    args = ap.parse_args()
    if not CORPUS.is_dir() or not (TAEF2_WEIGHTS / "taef2_encoder.pth").is_file():
        sys.exit(f"needs the shared corpus ({CORPUS}) and TAEF2 weights ({TAEF2_WEIGHTS})")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="lbdask-soak-"))
    started = time.perf_counter()
    lines: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {msg}", file=sys.stderr, flush=True)

    src, total = build_source(root, corpus_files(args.limit, args.smallest))
    dest = str(root / "archive")
    env = subprocess_env()
    cluster = DaskProcesses(env)
    killer = WorkerKiller(cluster, args.kill_every, random.Random(args.seed), lambda: committed_count(dest))
    try:
        cluster.start_worker()
        cluster.wait_workers(1)
        killer.start()
        cmd = [sys.executable, "-m", "lbdask", "migrate", str(src), dest, "--scheduler", cluster.address,
               "--weights", str(TAEF2_WEIGHTS), "--batch-size", str(args.batch_size), "--no-progress"]
        outcome = migrate_until_done(cmd, env, dest, total, log)
        killer.stop.set()
        migrate_seconds = time.perf_counter() - started
    finally:
        killer.stop.set()
        cluster.close()
    log("checking every input")
    problems, checked = check_archive(dest, src, TAEF2_WEIGHTS)
    rep = summarize(Archive.open(dest))
    jobs = read_job_records(Archive.open(dest))
    lines += [
        f"Soak run on {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: {total} inputs "
        f"({total - 3} corpus PNGs{f' (--limit {args.limit})' if args.limit else ''}"
        f"{f' (--smallest {args.smallest})' if args.smallest else ''}, 2 unconvertible, 1 symlink out of SRC), "
        f"batch size {args.batch_size}, a worker SIGKILLed every ~{args.kill_every:g} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| migration wall time (all runs) | {migrate_seconds:.0f} s |",
        f"| worker kills (skipped: no commit since the last kill) | {killer.kills} ({killer.skipped}) |",
        f"| driver runs (1 driver SIGKILL{'ed' if outcome['driver_killed'] else ' not reached'}) | {outcome['runs']} |",
        f"| runs that failed and were rerun | {len(outcome['failed_runs'])} {outcome['failed_runs'] or ''} |",
        f"| jobs recorded | {len(jobs)} |",
    ]
    for j in jobs:
        c = j.get("cluster") or {}
        peak = c.get("peak_worker_memory") or 0
        lines.append(f"| job {j['job_id']} | {j['images_processed']} images, {c.get('workers_lost', 0)} worker(s) lost, "
                     f"{c.get('tasks_retried', 0)} task(s) retried, peak worker memory {peak / 2**30:.2f} GiB |")
    drr = "none" if rep["drr"] is None else f"{rep['drr']:.1%}"
    lines += [
        f"| archive | {rep['images_latent']} latent, {rep['images_kept_png']} kept, {rep['images_failed']} failed "
        f"(raw bytes), {rep['images_refused']} refused |",
        f"| bytes | {rep['bytes_source']:,} source -> {rep['bytes_stored']:,} stored, DRR {drr} |",
        f"| rows checked | {dict(sorted(checked.items()))} |",
        f"| problems | {len(problems)} |",
    ]
    lines += [f"- {p}" for p in problems]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
