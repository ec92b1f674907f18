"""`--lossy-fallback avif`: an AVIF row written by a real small migration (scan, plan, read,
TAEF2 encode, write, in this process) reads back through `lbdask read`, `lbdask verify` and
a serving worker; a bad policy is a one-line error."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil

import pytest

import lbdask
from lbdask.archive import Archive, CatalogRow
from lbdask.cli import main
from lbdask.image import avif, pngio
from lbdask.image.quality import psnr
from lbdask.migrate import tasks
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.scan import scan_group
from lbdask.representation.encode import encode_with
from lbdask.representation.settings import load_job_settings
from lbdask.representation.shard import write_shard
from lbdask.serve.settings import ServeSettings
from lbdask.serve.worker import ServingWorker
from lbdask.storage import open_location
from lbdask.verify import verify_archive
from tests.support.cluster import grainy, png_bytes

FLOOR = 36.0  # grain the 96 px latent cannot reach; AVIF (8 or 10 bit) meets it in a few hundred bytes


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("avif")
    src, dest = root / "src", str(root / "arc")
    src.mkdir()
    for seed in (1, 2):
        (src / f"grainy{seed}.png").write_bytes(png_bytes(grainy(seed, 96)))
    settings = dataclasses.replace(load_job_settings(), lossy_fallback="avif", min_psnr=FLOOR)
    (batch,) = plan_batches(scan_group(str(src), {}, sorted(p.name for p in src.iterdir())), settings, 16)
    Archive.create(dest, model.model_info)
    decoded = tasks.read_png(str(src), {}, batch, settings)
    write_shard(dest, {}, decoded, encode_with(model, decoded, settings), settings)
    return src, dest


def test_avif_rows_record_their_form_and_read_back_through_lbdask_read(migrated, tmp_path):
    src, dest = migrated
    rows = list(Archive.open(dest).rows())
    assert len(rows) == 2
    for row in rows:
        assert (row.status, row.kept_format, row.representation) == ("lossy", "avif", "avif-lossy")
        assert row.lossy_bits in avif.AVIF_BITS and 0 <= row.lossy_quality <= 99 and row.lossy_distance is None
        out = tmp_path / f"{row.id}.out.png"
        assert main(["read", dest, row.id, "-o", str(out)]) == 0
        back, source = pngio.decode(out.read_bytes(), 10**6)[0], pngio.decode((src / row.id).read_bytes(), 10**6)[0]
        assert psnr(source, back) == pytest.approx(row.psnr) and row.psnr >= FLOOR
        assert out.read_bytes() == lbdask.open(dest).read(row.id)


def test_verify_passes_and_catches_a_damaged_or_different_avif(migrated, model, tmp_path, taef2_dir, capsys):
    src, dest = migrated
    assert main(["verify", dest, "--all", "--source", str(src), "--weights", str(taef2_dir)]) == 0
    assert "2 lossy: 0 failure(s)" in capsys.readouterr().out
    rows = list(Archive.open(dest).rows())
    source = open_location(str(src))
    changed = [dataclasses.replace(rows[0], decode_sha256="0" * 64), dataclasses.replace(rows[1], psnr=rows[1].psnr + 3)]
    failures = verify_archive(Archive.open(dest), model, changed, source).failures
    assert "lossy avif decode differs from the recorded one" in failures[0] and "(lossy avif)" in failures[1]
    copy = str(tmp_path / "arc")
    shutil.copytree(dest, copy)
    ref = rows[0].original
    with open(f"{copy}/{ref.key}", "r+b") as f:  # damage the AVIF object's bytes
        f.seek(ref.offset + ref.size // 2)
        f.write(b"\xff" * 16)
    assert main(["verify", copy, "--all", "--weights", str(taef2_dir)]) == 2
    assert rows[0].id in capsys.readouterr().out


def test_a_serving_worker_returns_what_lbdask_read_does_without_a_decode(migrated, model):
    _, dest = migrated
    worker = ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(model))
    try:
        for row in Archive.open(dest).rows():
            assert asyncio.run(worker.read(dest, row.id)) == lbdask.open(dest).read(row.id)
        assert worker.stats()["decodes"] == 0
    finally:
        worker.close()


def test_rows_before_avif_read_as_lossy_jpeg_xl():
    old = {"id": "a", "status": "lossy", "kept_format": "jxl", "lossy_distance": 2.0}
    assert CatalogRow.from_json(old).representation == "jxl-lossy"
    assert CatalogRow.from_json({"id": "b", "status": "lossy"}).representation == "jxl-lossy"


def test_a_bad_lossy_fallback_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    assert main(["migrate", str(src), str(tmp_path / "arc"), "--lossy-fallback", "webp", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lossy_fallback must be off, jxl, avif or best, not 'webp'" in err
    assert not (tmp_path / "arc").exists()
