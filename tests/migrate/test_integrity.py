"""Migration guards: DEST checked before any work, sources changed in place found on a rerun."""
import asyncio
import hashlib

import pytest
from distributed.utils_test import gen_cluster
from PIL import PngImagePlugin

from lbdask.archive import Archive
from lbdask.cli import main
from tests.support.archive import MODEL
from tests.support.cluster import IN_PROCESS_JOB, grainy, migrate_argv, png_bytes


def test_batch_size_above_the_archives_shard_size_is_refused_before_any_work(tmp_path, capsys):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    (src / "a.png").write_bytes(png_bytes(grainy(1)))
    Archive.create(dest, MODEL, shard_size=2)
    assert main(["migrate", str(src), dest, "--batch-size", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "batch size 4 is larger than the shard size 2" in err and "--batch-size 2" in err


def test_a_dest_folder_with_other_files_is_refused(tmp_path, capsys):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "a.png").write_bytes(png_bytes(grainy(1)))
    (dest / "important.txt").write_text("mine")
    assert main(["migrate", str(src), str(dest), "--no-progress"]) == 2
    assert "important.txt" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["important.txt"]


@pytest.mark.slow
@gen_cluster(nthreads=[("127.0.0.1", 2)], timeout=540, clean_kwargs=IN_PROCESS_JOB)
async def test_a_source_changed_in_place_is_reported_and_migrated_again_on_request(s, a, tmp_path, taef2_dir, capsys):
    """Same name and same size, other bytes (a text chunk edited): found by its mtime. The driver
    (`lbdask migrate`, in a thread) runs its tasks on an in-process scheduler and worker."""
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    old, new = (png_bytes(grainy(101), pnginfo=_text(v)) for v in ("1", "2"))
    assert len(old) == len(new) and old != new
    (src / "img0.png").write_bytes(png_bytes(grainy(100)))
    (src / "img1.png").write_bytes(old)
    argv = migrate_argv(str(src), dest, s.address)

    async def migrate(*extra: str) -> str:
        assert await asyncio.to_thread(main, [*argv, *extra]) == 0, capsys.readouterr().err[-3000:]
        return capsys.readouterr().out

    await migrate()
    (src / "img1.png").write_bytes(new)
    assert "1 source(s) changed since migration" in await migrate()
    assert Archive.open(dest).get_row("img1.png").source_sha256 == hashlib.sha256(old).hexdigest()
    redo = await migrate("--remigrate-changed")
    assert "migrated 1 of 2" in redo and "migrated again" in redo
    arc = Archive.open(dest)
    row = arc.get_row("img1.png")
    assert row.source_sha256 == hashlib.sha256(new).hexdigest() and ("tEXt", b"version\x002") in row.chunks
    assert sorted(r.id for r in arc.rows()) == ["img0.png", "img1.png"]


def _text(version: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("version", version)
    return info
