"""A small archive for the re-tiering tests: kept PNGs (the gate refused them at migration),
latents, and access statistics written through the serving workers' AccessLog."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from lbdask import cli
from lbdask.archive import Archive
from tests.support.cluster import TAEF2_WEIGHTS, grainy, png_bytes

#: the ids of the re-tiering archive that are stored as latents
LATENT_IDS = ("crop1.png", "l0.png", "l1.png", "l2.png")

DAY = 86400.0


def corpus_crop(corpus: Path, k: int, size: int = 96) -> bytes:
    """A `size` px RGB crop of the k-th corpus PNG."""
    path = sorted(p for p in corpus.glob("*.png"))[k]
    with Image.open(path) as im:
        crop = im.convert("RGB").crop((0, 0, size, size))
        buf = io.BytesIO()
        crop.save(buf, format="PNG")
        return buf.getvalue()


def build_sources(root: Path, corpus: Path) -> tuple[Path, Path]:
    """`kept/` (migrated with an impossible PSNR floor: every image kept) and `lat/` (latents)."""
    kept, lat = root / "kept", root / "lat"
    kept.mkdir(parents=True)
    lat.mkdir()
    for i in range(3):
        (kept / f"k{i}.png").write_bytes(png_bytes(grainy(200 + i, 64)))
        (lat / f"l{i}.png").write_bytes(png_bytes(grainy(300 + i, 64)))
    (kept / "crop0.png").write_bytes(corpus_crop(corpus, 0))
    (lat / "crop1.png").write_bytes(corpus_crop(corpus, 1, 64))
    return kept, lat


#: the scheduler of the in-process cluster that `migrate` and `retier` run their jobs on while one is open
_SCHEDULERS: list[str] = []


@contextlib.contextmanager
def in_process_cluster() -> Iterator[str]:
    """A Dask cluster in this process (one worker, 2 threads) that `migrate` and `retier` use
    while it is open; yields its scheduler address.

    Without it each job starts a local cluster with a worker process of its own: about 6 s
    of CPU for its start, the torch import and the model load, per job. The jobs on real
    `dask worker` processes are tests/system's (test_retier_crash, test_retier_serving)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        _SCHEDULERS.append(cluster.scheduler_address)
        try:
            yield cluster.scheduler_address
        finally:
            _SCHEDULERS.pop()


@pytest.fixture(scope="module")
def jobs_cluster() -> Iterator[str]:
    """`in_process_cluster` for a test module's jobs (`pytest.mark.usefixtures("jobs_cluster")`)."""
    with in_process_cluster() as address:
        yield address


def _cluster_args() -> list[str]:
    return ["--scheduler", _SCHEDULERS[-1]] if _SCHEDULERS else ["--workers", "1"]


def migrate(src: Path | str, dest: str, min_psnr: str) -> None:
    assert cli.main(["migrate", str(src), dest, *_cluster_args(), "--no-progress", "--weights", str(TAEF2_WEIGHTS),
                     "--min-psnr", min_psnr, "--max-pixels", "100000"]) == 0


def retier(dest: str, *extra: str) -> int:
    """`lbdask retier DEST EXTRA...` in this process, on the open `in_process_cluster` or a local cluster."""
    return cli.main(["retier", dest, *_cluster_args(), "--no-progress", "--weights", str(TAEF2_WEIGHTS), *extra])


def record_reads(dest: str, counts: dict[str, tuple[int, float]]) -> None:
    """id -> (reads, at): what a serving worker would have flushed."""
    from lbdask.access.log import AccessLog
    from lbdask.storage import open_location

    log = AccessLog(open_location(dest), f"test-{os.getpid()}-{time.time_ns()}")
    for image_id, (n, when) in counts.items():
        for _ in range(n):
            log.add(image_id, when)
    log.flush()


def store_digest(dest: str) -> dict[str, str]:
    """sha256 of every object under the archive (folder or S3)."""
    arc = Archive.open(dest)
    fs = arc.loc.fs
    fs.invalidate_cache()
    return {p: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(arc.loc.root)}


def old_shards(dest: str) -> list[tuple[str, int]]:
    """(path, bytes) of the shard objects in the buckets of the archive's own model (model X of
    the re-encode tests; another model's buckets are named `m<fingerprint>-...`)."""
    arc = Archive.open(dest)
    arc.loc.fs.invalidate_cache()
    found = arc.loc.fs.find(arc.loc.path("latents"), detail=True)
    return sorted((p, int(i["size"])) for p, i in found.items()
                  if "/c/" in p and not p.split("/latents/", 1)[1].startswith("m"))


_MODEL: dict[str, object] = {}


def read_all(dest: str) -> dict[str, bytes]:
    """`lbdask read`'s bytes of every id (in-process reader; the model is loaded once per session)."""
    from lbdask.reader import ArchiveReader

    box = ArchiveReader(Archive.open(dest), weights=TAEF2_WEIGHTS)
    box._model = _MODEL.get("taef2")
    out = {r.id: box.read(r.id) for r in box.archive.rows()}
    if box.loaded_model is not None:
        _MODEL["taef2"] = box.loaded_model
    return out


def write_model_y_configs(folder: Path) -> Path:
    """The shipped configs in `folder` plus `taef2-y`: TAEF2 with latents stored at half scale
    (another fingerprint; a latent of one decoded with the other gives other pixels)."""
    from lbdask.config import DEFAULT_CONFIG_DIR

    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    models = (folder / "models.yaml").read_text()
    (folder / "models.yaml").write_text(models + f"""
  taef2-y:
    architecture: tae
    latent_channels: 32
    downsample: 8
    pad_multiple: 16
    scaling_factor: 0.5
    weights: {{local: "{TAEF2_WEIGHTS}", encoder_file: taef2_encoder.pth, decoder_file: taef2_decoder.pth}}
""")
    return folder


@pytest.fixture
def model_y(tmp_path, monkeypatch) -> str:
    """LBDASK_CONFIG_DIR with model `taef2-y` (write_model_y_configs) for this test."""
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(write_model_y_configs(tmp_path / "configs")))
    return "taef2-y"


def write_policy(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="session")
def retier_archive(tmp_path_factory, corpus_dir, taef2_dir) -> tuple[Path, str]:
    """(root, archive) shared by the re-tiering tests (they work on copies): root/src/{kept,lat}
    are the sources; kept/ was migrated with an impossible PSNR floor (every image kept)."""
    root = tmp_path_factory.mktemp("retier")
    kept, lat = build_sources(root / "src", corpus_dir)
    dest = str(root / "arc")
    with in_process_cluster():
        migrate(kept, dest, "99")
        migrate(lat, dest, "20")
    return root, dest


class Crash(Exception):
    """Injected in place of the k-th counted store write of a run."""


def crash_after_each_write(tmp_path: Path, monkeypatch, dest0: str, patch, argv, check) -> tuple[int, list[str]]:
    """Run `lbdask retier` on a copy of `dest0` crashing at the k-th counted write, k = 0, 1, ...
    until a run finishes (in-process workers, so the crash reaches the moves).

    `patch(m, counting)` wraps the writes to count with `counting(real, name)`; `argv(dest,
    scheduler)` is the command. After each run every id must read back at once, a crashed run
    is run again (it must finish), then `check(dest, k)`. Returns the last k and its writes.
    """
    import time

    from distributed import Client, LocalCluster

    expected = set(read_all(dest0))
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

            run = argv(dest, cluster.scheduler_address)
            with monkeypatch.context() as m:
                patch(m, counting)
                try:
                    cli.main(run)
                    finished = True
                except Crash:
                    finished = False
            client.run(lambda: None)  # the worker thread has nothing queued from the crashed run
            while cluster.scheduler.tasks:
                time.sleep(0.05)
            assert set(read_all(dest)) == expected, k  # every object readable right after the crash
            if not finished:
                assert cli.main(run) == 0, k
            check(dest, k)
            if finished:
                return k, writes
            k += 1
