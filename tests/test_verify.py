"""`lbdask verify` on a small archive built through the Archive API with the TAEF2 weights."""
from __future__ import annotations

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest

from lbdask.archive import Archive, CatalogRow
from lbdask.cli import main
from lbdask.storage import open_location
from lbdask.verify import sample_rows, verify_archive
from tests.support.cluster import png_bytes
from tests.support.verify import build_verify_archive

SIZE = 64


@pytest.fixture(scope="module")
def built(tmp_path_factory, model, corpus_dir):
    """SRC with two latent images and one kept one; DEST migrated by hand through the Archive API."""
    root = tmp_path_factory.mktemp("verify")
    return root, build_verify_archive(str(root / "dest"), root / "src", model, corpus_dir, SIZE)


@pytest.fixture
def archive(built, tmp_path):
    """A private copy of the built archive and its source, so tests may damage them."""
    root, rows = built
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    return Archive.open(str(tmp_path / "dest"), mode="a"), tmp_path / "src", rows


def failures(arc, model, rows, src=None, tolerance=0.5):
    source = open_location(str(src)) if src is not None else None
    return verify_archive(arc, model, rows, source, tolerance).failures


def test_clean_archive_passes_with_and_without_source(archive, model, taef2_dir, capsys):
    arc, src, rows = archive
    report = verify_archive(arc, model, sample_rows(arc.rows(), 0), open_location(str(src)))
    assert report.failures == [] and (report.latent_checked, report.kept_checked) == (2, 1)
    assert report.decode_unchecked == 0
    assert main(["verify", arc.url, "--weights", str(taef2_dir), "--source", str(src)]) == 0
    assert main(["verify", arc.url, "--weights", str(taef2_dir), "--sample", "1"]) == 0
    summaries = [line for line in capsys.readouterr().out.splitlines() if line.startswith("verified")]
    assert len(summaries) == 2 and all("0 failure(s)" in line for line in summaries)
    assert "1 kept and 0 failed rows" in summaries[0]


def test_bad_latent_checksum_is_one_corruption_line_and_exit_2(archive, model, taef2_dir, capsys):
    arc, src, rows = archive
    arc.commit("b1", [dataclasses.replace(rows[0], id="broken.png", checksum="00000000", batch_id="b1")])
    assert main(["verify", arc.url, "--weights", str(taef2_dir), "--sample", "0"]) == 2
    out = capsys.readouterr().out.splitlines()
    bad = [line for line in out if line.startswith("broken.png: IntegrityError")]
    assert len(bad) == 1 and len(out) == 2   # the failure + the summary line
    assert "(1 corrupt or missing)" in out[1]


def test_decode_checksum_must_match_on_the_same_device_class(archive, model):
    arc, _src, rows = archive
    wrong = dataclasses.replace(rows[0], decode_sha256="0" * 64)
    assert len(failures(arc, model, [wrong])) == 1
    elsewhere = dataclasses.replace(wrong, device_class="cuda-sm90-torch2.13")
    assert failures(arc, model, [elsewhere]) == []   # not comparable across device classes


def test_psnr_drift_tolerance_depends_on_device_class(archive, model):
    arc, src, rows = archive
    drifted = dataclasses.replace(rows[0], psnr=rows[0].psnr + 0.3, decode_sha256=None)
    assert len(failures(arc, model, [drifted], src)) == 1          # same class: must be exact
    other = dataclasses.replace(drifted, device_class="cuda-sm90-torch2.13")
    assert failures(arc, model, [other], src, tolerance=0.5) == []
    assert len(failures(arc, model, [other], src, tolerance=0.1)) == 1


def test_kept_original_must_match_source_sha256(archive, model):
    arc, _src, rows = archive
    assert failures(arc, model, [rows[2]]) == []
    wrong = dataclasses.replace(rows[2], source_sha256="f" * 64)
    assert len(failures(arc, model, [wrong])) == 1


def test_failed_input_bytes_must_match_source_sha256(archive, model):
    arc, _src, _rows = archive
    raw = b"GIF89a: not a PNG at all"
    ref = arc.put_originals("b-failed", {"bad.png": raw})["bad.png"]
    row = CatalogRow(id="bad.png", status="failed", reason="not a PNG", source_size=len(raw),
                     source_sha256=hashlib.sha256(raw).hexdigest(), stored_bytes=len(raw), original=ref)
    assert failures(arc, model, [row]) == []
    [line] = failures(arc, model, [dataclasses.replace(row, source_sha256="f" * 64)])
    assert line.startswith("bad.png: IntegrityError")
    [line] = failures(arc, model, [dataclasses.replace(row, original=None)])
    assert "no stored copy" in line
    assert [r.id for r in sample_rows([row], 0)] == ["bad.png"]  # failed rows are sampled too


def test_changed_source_is_reported(archive, model):
    arc, src, rows = archive
    (src / "img0.png").write_bytes(png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8)))
    [line] = failures(arc, model, [rows[0]], src)
    assert "source file changed" in line


def test_cli_default_tolerance_is_the_library_default():
    from lbdask.cli.verify import DEFAULT_TOLERANCE_DB
    from lbdask.verify import CROSS_DEVICE_TOLERANCE_DB

    assert DEFAULT_TOLERANCE_DB == CROSS_DEVICE_TOLERANCE_DB


def test_failures_beyond_the_held_ones_are_counted_and_each_printed(archive, model, taef2_dir, capsys, monkeypatch):
    """A damaged archive can fail every row: the report keeps the first HELD_FAILURES messages,
    counts all, and the CLI prints each one as it is found."""
    from lbdask import verify

    arc, src, rows = archive
    broken = [dataclasses.replace(r, source_sha256="f" * 64) for r in rows if r.status == "kept"] * 3
    seen = []
    report = verify_archive(arc, model, broken, None, on_failure=seen.append)
    full = report.failures
    monkeypatch.setattr(verify, "HELD_FAILURES", 1)
    report = verify_archive(arc, model, broken, None, on_failure=seen.append)
    assert report.failures == full[:1] and report.failure_count == len(full) == 3 and seen == full * 2
    assert "3 failure(s)" in report.summary() and report.exit_code == 2
    for path in sorted(src.iterdir()):  # every source changed: one failure per row with a source hash
        path.write_bytes(png_bytes(np.zeros((SIZE, SIZE, 3), np.uint8)))
    assert main(["verify", arc.url, "--weights", str(taef2_dir), "--source", str(src), "--sample", "0"]) == 1
    out = capsys.readouterr().out.splitlines()
    changed = [line for line in out if "source file changed" in line]
    assert len(changed) >= 2 and f"{len(changed)} failure(s)" in out[-1]  # all printed, though one is held
