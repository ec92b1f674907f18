"""Lost catalog and data objects are noticed by every reader and rebuilt by `lbdask repair`."""
import hashlib
import os

import numpy as np
import pytest

from lbdask.archive import Archive, CatalogRow
from lbdask.cli import main
from lbdask.errors import IntegrityError
from lbdask.storage import open_location
from tests.support.archive import encoded, new_archive, write_batch

FOLDED = [f"img{i:02d}.png" for i in range(8)]
KEPT = {"k1.png": os.urandom(300), "k2.png": os.urandom(40)}


def migrated(dest):
    """Two compacted latent batches and a compacted kept batch (in two runs: b0, then b1 and
    bk) and one batch not yet compacted."""
    arc = new_archive(dest)
    write_batch(arc, "b0", FOLDED[:4], seed=0)
    arc.compact()
    write_batch(arc, "b1", FOLDED[4:], seed=1)
    refs = arc.put_originals("bk", KEPT)
    arc.commit("bk", [CatalogRow(id=i, status="kept", reason="alpha", original=refs[i], source_size=len(d),
                                 source_sha256=hashlib.sha256(d).hexdigest()) for i, d in KEPT.items()])
    arc.compact()
    write_batch(arc, "b2", ["late.png"], seed=2)
    return arc


def content(dest):
    """Every image's stored bytes, read through a fresh handle."""
    arc = Archive.open(dest)
    out = {}
    for row in arc.rows():
        out[row.id] = arc.read_original(row) if row.status == "kept" else arc.read_latent(row).data.tobytes()
    return out


def expected_content():
    latents = encoded(4, seed=0) + encoded(4, seed=1)
    out = {i: e.data.astype(np.uint16).tobytes() for i, e in zip(FOLDED, latents)}
    return {**out, **KEPT, "late.png": encoded(1, seed=2)[0].data.astype(np.uint16).tobytes()}


def cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_healthy_archive_needs_no_repair(dest, capsys):
    migrated(dest)
    assert content(dest) == expected_content()
    code, out, _ = cli(capsys, "repair", dest)
    assert code == 0 and "nothing to repair: 10 compacted row(s)" in out


def test_lost_manifest_is_noticed_and_repaired_byte_identical(dest, capsys):
    arc = migrated(dest)
    loc = open_location(dest)
    for path in loc.fs.ls(loc.path("catalog", "manifests")):
        loc.fs.rm_file(path)
    fresh = Archive.open(dest)
    with pytest.raises(IntegrityError, match="manifest .*missing"):
        list(fresh.rows())
    with pytest.raises(IntegrityError, match="manifest .*missing"):
        fresh.get_row("img03.png")
    assert fresh.get_row("late.png").id == "late.png"  # not compacted: still readable
    code, out, err = cli(capsys, "ls", dest)
    assert code == 2 and "late.png" in out and "img03.png" not in out and "manifest" in err
    code, _, err = cli(capsys, "report", dest)
    assert code == 2 and "manifest" in err
    with pytest.raises(IntegrityError):
        arc.compact()  # never builds a new generation on a lost one
    code, out, _ = cli(capsys, "repair", dest)
    assert code == 1 and "manifest is missing" in out and "restores 10 compacted row(s)" in out
    assert content_or_error(dest) == "error"  # a dry run changes nothing
    code, out, _ = cli(capsys, "repair", dest, "--apply")
    assert code == 0 and "rebuilt" in out
    assert content(dest) == expected_content()
    code, out, _ = cli(capsys, "repair", dest, "--apply")
    assert code == 0 and "nothing to repair" in out
    code, _, _ = cli(capsys, "compact", dest)
    assert code == 0 and content(dest) == expected_content()


def content_or_error(dest):
    try:
        return content(dest)
    except IntegrityError:
        return "error"


def test_lost_run_is_named_other_ids_stay_readable_and_repair_restores_it(dest, capsys):
    migrated(dest)
    arc = Archive.open(dest)
    manifest = arc.catalog.manifest()
    victim = next(r for r in manifest.runs if r.min_id <= "img02.png" <= r.max_id)
    loc = open_location(dest)
    loc.fs.rm_file(loc.path(victim.key))
    survivors = set(FOLDED[4:]) | set(KEPT) | {"late.png"}
    problems = []
    assert {r.id for r in Archive.open(dest).rows(problems)} == survivors
    assert len(problems) == 1 and victim.key in problems[0] and "missing" in problems[0]
    with pytest.raises(IntegrityError, match=f"{victim.key} is missing"):
        Archive.open(dest).get_row("img02.png")
    assert Archive.open(dest).get_row("img05.png").id == "img05.png"
    code, out, _ = cli(capsys, "repair", dest)
    assert code == 1 and f"catalog: {loc.path(victim.key)}: missing" in out
    assert cli(capsys, "repair", dest, "--apply")[0] == 0
    assert content(dest) == expected_content()


def test_unreadable_run_and_missing_original_are_integrity_errors(dest, capsys):
    migrated(dest)
    arc = Archive.open(dest)
    run = arc.catalog.manifest().runs[0]  # b1 and bk
    loc = open_location(dest)
    blob = loc.fs.cat_file(loc.path(run.key))
    loc.fs.pipe_file(loc.path(run.key), b"x" * run.footer_offset + blob[run.footer_offset:])  # blocks damaged
    with pytest.raises(IntegrityError, match=f"{run.key} is unreadable"):
        Archive.open(dest).get_row("img05.png")
    assert f"catalog: {loc.path(run.key)}: unreadable" in cli(capsys, "repair", dest)[1]
    assert cli(capsys, "repair", dest, "--apply")[0] == 0
    assert content(dest) == expected_content()
    bk = Archive.batch_object("originals", "bk")
    loc.fs.rm_file(loc.path(bk))
    fresh = Archive.open(dest)
    with pytest.raises(IntegrityError, match=f"k1.png.*{bk}.*missing"):
        fresh.read_original(fresh.get_row("k1.png"))
    code, out, _ = cli(capsys, "repair", dest)
    assert code == 2 and f"k1.png: stored copy object {bk}" in out and "k2.png" in out
    assert "img" not in out


def test_missing_latent_shard_is_reported_by_repair(dest, capsys):
    migrated(dest)
    row = Archive.open(dest).get_row("late.png")
    loc = open_location(dest)
    shard = row.index // 4
    loc.fs.rm_file(loc.path("latents", row.bucket, "c", str(shard), "0", "0", "0"))
    code, out, _ = cli(capsys, "repair", dest)
    assert code == 2 and f"late.png: latent shard latents/{row.bucket}/c/{shard}/0/0/0 is missing" in out
    with pytest.raises(IntegrityError, match="late.png"):
        Archive.open(dest).read_latent(row)


def test_a_diagnosis_reads_each_run_once(tmp_path, monkeypatch):
    """Checked whole before use, and named by the current manifest as well as by every manifest
    on the store, a run was scanned three times; its copy in the spill is read instead."""
    from lbdask.archive.repair import diagnose
    from lbdask.archive.runs import RunReader

    dest = str(tmp_path / "arc")
    migrated(dest)
    arc = Archive.open(dest)
    runs = arc.catalog.manifest().runs
    reads, real = [], arc.loc.fs.cat_file
    monkeypatch.setattr(arc.loc.fs, "cat_file", lambda path, *a, **k: (reads.append(path), real(path, *a, **k))[1])
    once = {}
    for run in runs:  # what one scan on a fresh reader reads: the footer, each partition, its blocks
        list(RunReader(arc.loc).scan(run))
        once[run.key], reads[:] = len(reads), []
    with diagnose(arc) as diag:
        assert diag.recovered == diag.indexed == 10 and not diag.catalog
    assert len(runs) == 2 and {r.key: reads.count(arc.loc.path(r.key)) for r in runs} == once
