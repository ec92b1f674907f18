"""Migration guards: DEST checked before any work, sources changed in place found on a rerun."""
import hashlib
import subprocess

import pytest
from PIL import PngImagePlugin

from lbdask.archive import Archive
from lbdask.cli import main
from tests.support.archive import MODEL
from tests.support.cluster import grainy, migrate_cmd, png_bytes


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
def test_a_source_changed_in_place_is_reported_and_migrated_again_on_request(tmp_path, dask_env, taef2_dir):
    """Same name and same size, other bytes (a text chunk edited): found by its mtime."""
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    old, new = (png_bytes(grainy(101), pnginfo=_text(v)) for v in ("1", "2"))
    assert len(old) == len(new) and old != new
    (src / "img0.png").write_bytes(png_bytes(grainy(100)))
    (src / "img1.png").write_bytes(old)
    cmd = migrate_cmd(str(src), dest, None, "--workers", "1")
    first = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (src / "img1.png").write_bytes(new)
    again = subprocess.run(cmd, env=dask_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 source(s) changed since migration" in again.stdout, again.stderr[-3000:]
    assert Archive.open(dest).get_row("img1.png").source_sha256 == hashlib.sha256(old).hexdigest()
    redo = subprocess.run(cmd + ["--remigrate-changed"], env=dask_env, capture_output=True, text=True, timeout=300)
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert "migrated 1 of 2" in redo.stdout and "migrated again" in redo.stdout
    arc = Archive.open(dest)
    row = arc.get_row("img1.png")
    assert row.source_sha256 == hashlib.sha256(new).hexdigest() and ("tEXt", b"version\x002") in row.chunks
    assert sorted(r.id for r in arc.rows()) == ["img0.png", "img1.png"]


def _text(version: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("version", version)
    return info
