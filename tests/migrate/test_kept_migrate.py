"""`lbdask migrate --kept-format jxl [--lossy-fallback jxl]`: the batch tasks and a real cluster run."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import imagecodecs
import numpy as np
import pytest
from distributed.utils_test import gen_cluster

import lbdask
from lbdask.archive import Archive
from lbdask.cli import main
from lbdask.image import kept, pngio, pngsamples
from lbdask.image.quality import psnr
from lbdask.migrate import tasks
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.scan import scan_group
from lbdask.representation.settings import load_job_settings
from lbdask.representation.shard import write_shard
from tests.support.cluster import IN_PROCESS_JOB, grainy, migrate_argv, png_bytes
from tests.support.modes import SOURCES


def write_source(root, names):
    root.mkdir()
    for name in names:
        (root / f"{name.replace(' ', '_').replace('+', '_')}.png").write_bytes(SOURCES[name]())
    return sorted(p.name for p in root.iterdir())


def run_keep_batch(src, dest, settings):
    """Scan, plan and run the keep-only batch in this process (no model needed)."""
    ids = sorted(p.name for p in src.iterdir())
    items = scan_group(str(src), {}, ids)
    (batch,) = plan_batches(items, settings, 16)
    assert not batch.encodes
    Archive.create(dest, {"name": "taef2", "fingerprint": "f"})
    decoded = tasks.read_png(str(src), {}, batch, settings)
    return write_shard(dest, {}, decoded, None, settings)


def test_keep_batch_stores_jxl_copies_that_read_back_pixel_exact(tmp_path):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    ids = write_source(src, ["L", "P+tRNS", "I;16", "RGB 16-bit"])
    settings = dataclasses.replace(load_job_settings(), kept_format="jxl", jxl_effort=3)
    result = run_keep_batch(src, dest, settings)
    rows = {r.id: r for r in Archive.open(dest).rows()}
    assert {r.kept_format for r in rows.values()} == {"jxl"}
    assert result.representations["jxl"]["images"] == len(ids)
    assert result.representations["jxl"]["bytes_stored"] < sum((src / i).stat().st_size for i in ids)
    box = lbdask.open(dest)
    for image_id in ids:
        original, back = (src / image_id).read_bytes(), box.read(image_id)
        assert np.array_equal(pngsamples.samples(back), pngsamples.samples(original))
        assert pngio.probe(back).chunks == pngio.probe(original).chunks
        assert rows[image_id].source_sha256 and rows[image_id].stored_sha256 != rows[image_id].source_sha256


def test_keep_batch_with_a_forced_mismatch_keeps_the_png_and_says_why(tmp_path, monkeypatch):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    write_source(src, ["L", "I;16"])
    real = imagecodecs.jpegxl_decode

    def off_by_one(data, *a, **kw):
        out = np.array(real(data, *a, **kw))
        out.flat[0] ^= 1
        return out

    monkeypatch.setattr(kept.imagecodecs, "jpegxl_decode", off_by_one)
    run_keep_batch(src, dest, dataclasses.replace(load_job_settings(), kept_format="jxl", jxl_effort=3))
    box = lbdask.open(dest)
    for row in Archive.open(dest).rows():
        assert row.kept_format == "png" and "not pixel-identical" in row.kept_note
        assert box.read(row.id) == (src / row.id).read_bytes()


@pytest.mark.slow
@gen_cluster(nthreads=[("127.0.0.1", 2)], timeout=540, clean_kwargs=IN_PROCESS_JOB)
async def test_cli_migrate_with_jxl_and_lossy_fallback_stores_every_representation(s, a, corpus_dir, taef2_dir, tmp_path,
                                                                                   capsys):
    """`lbdask migrate` (in a thread) on a scheduler and worker in this process: latents, jxl copies and
    lossy JPEG XL in one archive; read, verify and report handle each."""
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    write_source(src, ["RGBA", "LA", "P+tRNS", "RGB 16-bit"])
    for i in range(2):
        (src / f"grainy{i}.png").write_bytes(png_bytes(grainy(7 + i, 64)))
    argv = migrate_argv(str(src), dest, s.address, "--kept-format", "jxl", "--lossy-fallback", "jxl", "--min-psnr", "30")
    assert await asyncio.to_thread(main, argv) == 0, capsys.readouterr().err[-3000:]
    assert "lossy JXL" in capsys.readouterr().out  # the per-representation breakdown (cli/report.storage_lines)
    rows = {r.id: r for r in Archive.open(dest).rows()}
    assert {r.representation for r in rows.values()} >= {"jxl", "jxl-lossy"}
    box = lbdask.open(dest, weights=taef2_dir)
    for row in rows.values():
        original, back = (src / row.id).read_bytes(), box.read(row.id)
        assert pngio.probe(back).chunks == pngio.probe(original).chunks
        if row.status == "kept":
            assert np.array_equal(pngsamples.samples(back), pngsamples.samples(original))
        else:
            rgb, _ = pngio.decode(original, 10**8)
            assert psnr(rgb, pngio.decode(back, 10**8)[0]) >= 30
    verify = ["verify", dest, "--sample", "0", "--source", str(src), "--weights", str(taef2_dir)]
    assert await asyncio.to_thread(main, verify) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["report", dest, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sum(r.get("images", 0) for r in rep["representations"].values()) == len(rows)
    assert rep["representations"]["jxl-lossy"]["images"] == rep["images_lossy"] >= 1
    assert rep["psnr_lossy"]["psnr_min"] >= 30


def test_kept_format_settings_are_validated():
    from lbdask.errors import ConfigError

    settings = load_job_settings()
    assert (settings.kept_format, settings.lossy_fallback) == ("png", "off")  # configs/jobs.yaml defaults
    for bad in ({"kept_format": "gif"}, {"lossy_fallback": "webp"}, {"jxl_effort": 0}, {"lossy_jxl_effort": 10}):
        with pytest.raises(ConfigError):
            settings.with_overrides(**bad)
