"""What a diagnosis names and where it keeps its spill, on a folder: the findings `lbdask repair`
prints (unreferenced index files, damaged catalog objects, lost data folders) and what a
rebuild leaves on the store (the old index files removed, the commit log's start kept)."""
import os

from lbdask.archive import Archive, CatalogRow, repair, spill
from lbdask.archive.commit_log import Slot, claim, read_slot, slot_path
from lbdask.archive.creation import set_format_version
from lbdask.archive.repair import diagnose, rebuild
from lbdask.archive.rows import dump_rows
from lbdask.storage import open_location
from tests.archive.test_repair import KEPT, migrated
from tests.support.archive import new_archive
from tests.support.v1_catalog import write_v1_catalog


def stray_index_files(arc):
    """A crashed compaction's run (a copy of a live one, generation 9) and a v1 partition file
    of generation 7 holding a row no run has: neither named by the manifest."""
    loc = arc.loc
    live = arc.catalog.manifest().runs[0]
    run = loc.path("catalog", "runs", "0000000009-deadbeef0000.run")
    loc.fs.pipe_file(run, loc.fs.cat_file(loc.path(live.key)))
    part = loc.path("catalog", "index", "g0000007", "p00001.jsonl.gz")
    loc.fs.makedirs(os.path.dirname(part), exist_ok=True)
    loc.fs.pipe_file(part, dump_rows([CatalogRow(id="old.png", status="failed", reason="v1")]))
    return part, run


def test_unreferenced_index_files_are_named_and_a_rebuild_removes_them(tmp_path):
    arc = migrated(str(tmp_path / "arc"))
    named = [arc.loc.path(r.key) for r in arc.catalog.manifest().runs]
    part, run = stray_index_files(arc)
    with diagnose(arc) as diag:
        assert sorted(diag.unreferenced) == sorted([part, run]) and diag.generation == 9
        assert diag.recovered == diag.indexed + 1 and diag.needs_rebuild  # old.png, from the stray partition
        assert "1 compacted row(s) are not in the current index" in diag.catalog
        new = rebuild(arc, diag)
    assert new.generation == 10
    left = arc.loc.fs.find(arc.loc.path("catalog", "runs")) + arc.loc.fs.find(arc.loc.path("catalog", "index"))
    assert left == [arc.loc.path(r.key) for r in new.runs] and not set(left) & {*named, part, run}
    assert Archive.open(arc.url).get_row("old.png").reason == "v1"


def test_every_spill_file_lies_in_the_diagnosis_folder(tmp_path, monkeypatch):
    """Run copies and sorted chunks alike: removing the folder removes them all."""
    arc = migrated(str(tmp_path / "arc"))
    monkeypatch.setattr(spill, "CHUNK_ROWS", 2)
    made, real = [], spill.spill_file
    def recorded(folder, rows):
        made.append(real(folder, rows))
        return made[-1]
    monkeypatch.setattr(spill, "spill_file", recorded)
    monkeypatch.setattr(repair, "spill_file", recorded)
    with diagnose(arc) as diag:
        assert diag.recovered == 10 and len(made) > len(arc.catalog.manifest().runs)
        assert {os.path.dirname(p) for p in made} == {diag.folder}
    assert not any(os.path.exists(p) for p in made) and not os.path.exists(diag.folder)


def test_damaged_catalog_objects_are_each_named_missing_or_unreadable(tmp_path):
    arc = migrated(str(tmp_path / "arc"))
    loc, cat = arc.loc, arc.catalog
    folded, late = cat.folded_path(cat.folded_names()[0]), cat.batch_path("b2")
    manifest = cat.manifests.path(cat.manifests.generations()[-1])
    old = loc.path("catalog", "index", "g0000001", "p00000.jsonl.gz")  # a v1 leftover: its damage is no loss
    loc.fs.makedirs(os.path.dirname(old), exist_ok=True)
    late_bytes = loc.fs.cat_file(late)
    for path in (folded, late, manifest, old):
        loc.fs.pipe_file(path, b"not gzip, not json")
    with diagnose(Archive.open(arc.url)) as diag:
        found = diag.catalog
        rebuild(arc, diag)  # without the unreadable manifest's log_next: from the newest fence
    assert f"{folded}: unreadable" in found and f"{late}: unreadable" in found
    assert not any(old in line for line in found) and old in diag.unreferenced
    loc.fs.pipe_file(late, late_bytes)
    assert Archive.open(arc.url).get_row("late.png").id == "late.png"
    assert any(manifest in line for line in found if not line.startswith(manifest + ":"))  # the manifest's own error


def test_a_v1_catalog_is_indexed_by_its_partitions_and_a_lost_one_is_missing(tmp_path):
    dest = str(tmp_path / "arc")
    new_archive(dest)
    loc = open_location(dest)
    set_format_version(loc, 1)
    rows = {f"b{b}": [CatalogRow(id=f"img{b}-{j}.png", status="failed", reason="v1") for j in range(5)] for b in range(3)}
    write_v1_catalog(loc, rows, partitions=4)
    with diagnose(Archive.open(dest)) as diag:
        assert (diag.recovered, diag.indexed, diag.catalog, diag.needs_rebuild) == (15, 15, [], False)
    lost = sorted(loc.fs.find(loc.path("catalog", "index")))[0]
    loc.fs.rm_file(lost)
    with diagnose(Archive.open(dest)) as diag:
        assert f"{lost}: missing" in diag.catalog and diag.indexed < diag.recovered == 15


def test_a_lost_data_folder_names_every_row_that_used_it(tmp_path):
    arc = migrated(str(tmp_path / "arc"))
    arc.loc.fs.rm(arc.loc.path("originals"), recursive=True)
    with diagnose(arc) as diag:
        assert [line.split(":")[0] for line in diag.data] == sorted(KEPT)


def test_a_rebuild_keeps_where_readers_start_in_the_commit_log(tmp_path):
    """With the manifest: its `log_next`. Without one: after the newest fence, found from the
    newest slot back past an unreadable one (below it the slots were folded)."""
    arc = migrated(str(tmp_path / "a"))
    kept = arc.catalog.manifest().log_next
    stray_index_files(arc)  # something to rebuild
    with diagnose(arc) as diag:
        assert rebuild(arc, diag).log_next == kept
    arc = migrated(str(tmp_path / "b"))
    log, loc = arc.catalog.log, arc.loc
    seqs = range(next(s for s in range(100) if read_slot(log, s) is None))
    fence = max(s for s in seqs if read_slot(log, s).fence is not None)
    assert fence < seqs[-1]  # b2 was announced after the last compaction's fence
    loc.fs.pipe_file(slot_path(log, seqs[-1]), b"{broken")
    for path in loc.fs.ls(loc.path("catalog", "manifests")):  # the hint, latest.json, too
        loc.fs.rm_file(path)
    with diagnose(Archive.open(arc.url)) as diag:
        assert rebuild(arc, diag).log_next == fence + 1


def test_a_rebuild_reads_on_from_the_manifest_past_a_dead_fence(tmp_path):
    """A compaction that claimed its fence and died leaves a fence newer than the batches
    announced before it: starting after that fence would hide them (late.png)."""
    arc = migrated(str(tmp_path / "arc"))
    claim(arc.catalog.log, arc.catalog.manifest().log_next, Slot(0, fence=99))
    stray_index_files(arc)
    with diagnose(arc) as diag:
        rebuild(arc, diag)
    assert Archive.open(arc.url).get_row("late.png").id == "late.png"


def test_a_catalog_never_compacted_rebuilds_from_the_first_slot(tmp_path):
    """No manifest and no fence: readers start at slot 0; nothing compacted: no run."""
    dest = str(tmp_path / "arc")
    arc = new_archive(dest)
    arc.commit("b0", [CatalogRow(id="a.png", status="failed", reason="x")])
    with diagnose(arc) as diag:
        assert (diag.recovered, diag.generation) == (0, 0)
        new = rebuild(arc, diag)
    assert (new.generation, new.runs, new.log_next) == (1, [], 0)
    assert Archive.open(dest).get_row("a.png").reason == "x"
