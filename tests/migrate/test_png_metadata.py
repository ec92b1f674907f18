"""A real AI image's prompt and workflow (5.7 KB of tEXt) after a migration (scan, plan, read,
TAEF2 encode, write, in this process): not in the catalog row but in the batch's PNG metadata
object, and back byte for byte and in order from `lbdask read`, a serving worker, the
in-process reader and a retier promote, on the kept, latent and lossy paths. Damage names the
object (exit 2); a row written before, with its chunks inline, still reads."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import lbdask
from lbdask.archive import Archive
from lbdask.archive.meta import row_chunks, with_chunks
from lbdask.cli import main
from lbdask.image import pngio
from lbdask.migrate import tasks
from lbdask.migrate.job import prepare_buckets
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.scan import scan_group
from lbdask.representation.encode import encode_with
from lbdask.representation.settings import load_job_settings
from lbdask.representation.shard import write_shard
from lbdask.serve.settings import ServeSettings
from lbdask.serve.worker import ServingWorker
from tests.support.archive import line_size
from tests.support.cluster import grainy

NAME = "sdturbo_sdxlturbo_example.png"  # 512x512, two tEXt chunks: 1,048 and 4,710 bytes


def text_chunks(png: bytes) -> list[tuple[str, bytes]]:
    """Every ancillary chunk a reader restores, in file order, straight from the file's bytes."""
    return [(t, b) for t, b in pngio.iter_chunks(png) if t in pngio.PRESERVED_CHUNK_TYPES]


def migrate(src, dest, model=None, **settings):
    """One batch of every file in `src`, migrated as `lbdask migrate` does; the archive."""
    job = dataclasses.replace(load_job_settings(), **settings)
    (batch,) = plan_batches(scan_group(str(src), {}, sorted(p.name for p in src.iterdir())), job, 16)
    arc = Archive.create(str(dest), model.model_info if model else {"name": "taef2", "fingerprint": "f"})
    if batch.encodes:  # the driver's part (lbdask.migrate.job): buckets and fresh shards
        prepare_buckets(arc, [batch], model.model_info, job)
    decoded = tasks.read_png(str(src), {}, batch, job)
    write_shard(str(dest), {}, decoded, encode_with(model, decoded, job) if batch.encodes else None, job)
    return Archive.open(str(dest))


@pytest.fixture(scope="module")
def sources(tmp_path_factory, corpus_dir):
    """The corpus file as it is (kept path) and downscaled to 96x64 with its chunks kept (latent path)."""
    root = tmp_path_factory.mktemp("meta")
    data = (corpus_dir / NAME).read_bytes()
    assert sum(len(b) for _, b in text_chunks(data)) > 5000
    small = np.asarray(Image.fromarray(pngio.decode(data, 10**6)[0]).resize((96, 64), Image.LANCZOS))
    for folder, png in (("kept", data), ("latent", pngio.encode(small, None, pngio.probe(data).chunks))):
        (root / folder).mkdir()
        (root / folder / NAME).write_bytes(png)
    return root


@pytest.fixture(scope="module")
def kept_arc(sources):
    return migrate(sources / "kept", sources / "kept-arc", min_side=1024)  # too small to encode: kept


@pytest.fixture(scope="module")
def latent_arc(sources, model):
    return migrate(sources / "latent", sources / "latent-arc", model, min_psnr=15.0)


def check_moved_out(arc: Archive, source: bytes):
    row = arc.get_row(NAME)
    assert row.chunks == [] and row.chunks_ref.key == Archive.batch_object("meta", row.batch_id)
    assert row_chunks(arc, row) == text_chunks(source)
    assert pngio.probe(source).chunks and row.chunk_types == ["tEXt", "tEXt"]
    return row


def test_the_kept_path_moves_the_text_out_of_the_row(kept_arc, sources, tmp_path, capsys):
    source = (sources / "kept" / NAME).read_bytes()
    row = check_moved_out(kept_arc, source)
    assert row.status == "kept" and line_size(row) < 1024  # the row alone, in the index
    ref = row.chunks_ref  # the object holds the chunks as the PNG file does
    assert kept_arc.loc.fs.cat_file(kept_arc.loc.path(ref.key), start=ref.offset, end=ref.offset + ref.size) in source
    out = tmp_path / "out.png"
    assert main(["read", kept_arc.url, NAME, "-o", str(out)]) == 0 and out.read_bytes() == source
    assert main(["ls", kept_arc.url, "--json"]) == 0  # the chunk types, from the row itself
    assert json.loads(capsys.readouterr().out)["chunks"] == ["tEXt", "tEXt"]


def test_the_latent_path_reads_back_every_chunk_in_order(latent_arc, sources, model, taef2_dir, tmp_path):
    source = (sources / "latent" / NAME).read_bytes()
    row = check_moved_out(latent_arc, source)
    inline = with_chunks(latent_arc, row)
    assert row.status == "latent" and line_size(row) < line_size(inline) - 7000
    out = tmp_path / "out.png"
    assert main(["read", latent_arc.url, NAME, "-o", str(out), "--weights", str(taef2_dir)]) == 0
    assert text_chunks(out.read_bytes()) == text_chunks(source)
    worker = ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(model))
    try:
        assert asyncio.run(worker.read(latent_arc.url, NAME)) == out.read_bytes()
    finally:
        worker.close()


def test_a_row_written_before_with_inline_chunks_still_reads(latent_arc, sources, taef2_dir, tmp_path):
    dest = str(tmp_path / "arc")
    shutil.copytree(latent_arc.url, dest)
    arc = Archive.open(dest, mode="a")
    old = dataclasses.replace(with_chunks(arc, arc.get_row(NAME)), id="old.png")
    assert old.chunks and old.chunks_ref is None
    arc.catalog.commit("old-0", [old])  # the catalog as the code before wrote it: no metadata object
    assert arc.get_row("old.png").chunks == text_chunks((sources / "latent" / NAME).read_bytes())
    box = lbdask.open(dest, weights=taef2_dir)
    png = box.read("old.png")
    assert png == box.read(NAME) and text_chunks(png) == old.chunks


def test_a_missing_or_damaged_metadata_object_is_one_line_naming_it(latent_arc, taef2_dir, tmp_path, capfd):
    dest = str(tmp_path / "arc")
    shutil.copytree(latent_arc.url, dest)
    key = latent_arc.get_row(NAME).chunks_ref.key
    path = tmp_path / "arc" / key
    data = bytearray(path.read_bytes())
    path.unlink()
    read = ["read", dest, NAME, "--weights", str(taef2_dir), "-o", str(tmp_path / "x.png")]
    assert main(read) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and f"PNG metadata of '{NAME}': object {key} is missing" in err
    data[len(data) // 2] ^= 0x20  # one letter's case in the workflow
    path.write_bytes(data)
    assert main(read) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and f"PNG metadata of '{NAME}': object {key} in {dest} does not match its sha256" in err
    assert main(["verify", dest, "--weights", str(taef2_dir)]) == 2
    assert key in capfd.readouterr().out


def test_a_promote_writes_the_pixel_copy_with_every_chunk(latent_arc, sources, model, tmp_path, monkeypatch):
    from lbdask.models import resident
    from lbdask.retier.moves import Chunk, ChunkResult, MoveContext, promote

    monkeypatch.setattr(resident, "resident_model", lambda: SimpleNamespace(use=lambda: contextlib.nullcontext(model)))
    dest = str(tmp_path / "arc")
    shutil.copytree(latent_arc.url, dest)
    arc = Archive.open(dest, mode="a")
    row = arc.get_row(NAME)
    (new,) = promote(arc, [row], Chunk("promote", "rt1-promote", [NAME]), MoveContext(load_job_settings(), 0.0),
                     ChunkResult("promote", "rt1-promote", 1))
    assert new.chunks_ref == row.chunks_ref and new.chunks == []  # the row still points at the migration's object
    assert text_chunks(arc.read_pixels(new)) == text_chunks((sources / "latent" / NAME).read_bytes())


def test_a_lossy_copy_reads_back_with_every_chunk(sources, model, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    chunks = pngio.probe((sources / "kept" / NAME).read_bytes()).chunks
    (src / NAME).write_bytes(pngio.encode(grainy(1, 96), None, chunks))  # grain the latent misses, AVIF keeps
    arc = migrate(src, tmp_path / "arc", model, lossy_fallback="avif", min_psnr=36.0)
    row = arc.get_row(NAME)
    assert row.status == "lossy" and row.chunks == [] and row.chunks_ref is not None
    assert text_chunks(lbdask.open(arc.url).read(NAME)) == text_chunks((src / NAME).read_bytes())
