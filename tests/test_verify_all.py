"""`lbdask verify DEST --all`: every object checked, on a folder and on S3; damage means exit 2."""
from __future__ import annotations

import dataclasses
import gzip

import pytest

from lbdask.access.log import AccessLog
from lbdask.archive import Archive
from lbdask.cli import main
from lbdask.verify import verify_archive
from tests.support.verify import build_verify_archive

SIZE = 32


@pytest.fixture(params=["folder", "s3"])
def built(request, tmp_path, model, corpus_dir):
    dest = str(tmp_path / "dest") if request.param == "folder" else request.getfixturevalue("s3_bucket") + "/dest"
    rows = build_verify_archive(dest, tmp_path / "src", model, corpus_dir, SIZE)
    return Archive.open(dest, mode="a"), rows


def run_verify(capsys, dest, taef2_dir, *extra):
    code = main(["verify", dest, "--all", "--weights", str(taef2_dir), *extra])
    lines = capsys.readouterr().out.splitlines()
    return code, [line for line in lines if not line.startswith("verified")], [line for line in lines if line.startswith("verified")]


def put(arc, key, data):
    arc.loc.fs.pipe_file(arc.loc.path(key), data)


def get(arc, key):
    return arc.loc.fs.cat_file(arc.loc.path(key))


def test_clean_archive_passes_all_and_sample(built, capsys, taef2_dir):
    arc, _rows = built
    log = AccessLog(arc.loc, "w")
    log.add("img0.png")
    log.flush()
    arc.compact()  # folded copies and a manifest are checked too
    code, problems, [summary] = run_verify(capsys, arc.url, taef2_dir)
    assert (code, problems) == (0, [])
    assert "verified 2 latent, 1 kept and 0 failed rows: 0 failure(s)" in summary
    assert "0 decode(s) without a reference" in summary
    code, problems, [summary] = run_verify(capsys, arc.url, taef2_dir, "--sample", "1")
    assert (code, problems) == (0, []) and "(1 latent(s) checksum only, not decoded)" in summary


def test_flipped_bytes_in_a_zarr_shard_are_caught(built, capsys, taef2_dir):
    arc, rows = built
    key = f"latents/{rows[0].bucket}/c/0/0/0/0"
    data = bytearray(get(arc, key))
    for i in range(20, 40):
        data[i] ^= 0xFF
    put(arc, key, bytes(data))
    code, problems, [summary] = run_verify(capsys, arc.url, taef2_dir)
    assert code == 2
    ids = {p.split(":")[0] for p in problems}
    assert "img0.png" in ids and ids <= {"img0.png", "img1.png"}  # the first bytes are img0's chunk
    assert all("IntegrityError" in p for p in problems) and "corrupt or missing" in summary


def test_truncated_kept_object_is_caught(built, capsys, taef2_dir):
    arc, rows = built
    key = rows[2].original.key
    put(arc, key, get(arc, key)[:-7])
    code, problems, _ = run_verify(capsys, arc.url, taef2_dir)
    assert code == 2
    [line] = problems
    assert line.startswith("img2.png: IntegrityError") and "truncated" in line


def test_missing_shard_is_named(built, capsys, taef2_dir):
    arc, rows = built
    key = f"latents/{rows[0].bucket}/c/0/0/0/0"
    arc.loc.fs.rm_file(arc.loc.path(key))
    code, problems, _ = run_verify(capsys, arc.url, taef2_dir, "--sample", "1")
    assert code == 2
    assert sorted(problems) == [f"img0.png: {key} is missing", f"img1.png: {key} is missing"]


def test_unreadable_catalog_and_access_objects_are_damage(built, capsys, taef2_dir):
    arc, _rows = built
    arc.compact()
    log = AccessLog(arc.loc, "w")
    log.add("img0.png")
    log.flush()
    [access_log] = arc.loc.fs.ls(arc.loc.path("access", "logs"), detail=False)
    arc.loc.fs.pipe_file(access_log, gzip.compress(b"{not json"))
    folded = arc.catalog.folded_path("b0")[len(arc.loc.root.rstrip("/")) + 1:]  # catalog/folded/<fan>/b0.jsonl.gz
    put(arc, folded, get(arc, folded)[:-9])
    code, problems, [summary] = run_verify(capsys, arc.url, taef2_dir)
    assert code == 2 and "catalog damaged: 2 object(s) unreadable" in summary
    assert any(folded in p for p in problems)
    assert any("access statistics object" in p for p in problems)
    code, _, _ = run_verify(capsys, arc.url, taef2_dir, "--sample", "0")
    assert code == 2
    assert main(["verify", arc.url, "--weights", str(taef2_dir)]) == 0  # without --all these are not read


def test_checksum_only_latents_are_still_read(built, model):
    arc, rows = built
    broken = dataclasses.replace(rows[0], checksum="00000000")
    report = verify_archive(arc, model, [broken], decode=lambda row: False)
    assert report.checksum_only == 1 and report.corrupt == 1
    assert report.failures[0].startswith("img0.png: IntegrityError")
    report = verify_archive(arc, model, [rows[0]], decode=lambda row: False)
    assert report.failures == [] and report.checksum_only == 1
