"""`repair` and the v1 conversion sort through a spill: the same answer as in memory, and the
index is never collected in memory (issue 25: memory independent of N)."""
import os
import random
import weakref

import pytest

from lbdask.archive import Archive, CatalogRow, compaction, repair, spill
from lbdask.archive.creation import set_format_version
from lbdask.archive.repair import diagnose, rebuild
from lbdask.archive.spill import SortedRows
from lbdask.cli import main
from lbdask.storage import open_location
from tests.archive.test_repair import KEPT, migrated
from tests.support.archive import new_archive
from tests.support.v1_catalog import write_v1_catalog


@pytest.fixture
def dest(tmp_path):
    """A folder: the spill is local whatever the store (test_repair and test_upgrade run both)."""
    return str(tmp_path / "arc")


def tiny(monkeypatch, chunk=3, fanin=2, block=2):
    monkeypatch.setattr(spill, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(spill, "FANIN", fanin)
    monkeypatch.setattr(spill, "BLOCK_ROWS", block)


def test_sorted_rows_keep_the_last_row_of_each_id_in_id_order(tmp_path, monkeypatch):
    tiny(monkeypatch)
    chunks = []
    monkeypatch.setattr(spill, "on_spill", chunks.append)
    rnd = random.Random(3)
    added = [CatalogRow(id=f"i{rnd.randrange(40):02d}", status="failed", reason=str(n)) for n in range(200)]
    expected = {}
    for row in added:
        expected[row.id] = row.reason
    out = SortedRows(str(tmp_path), added[:90])
    out.add(added[90:])
    assert [(r.id, r.reason) for r in out] == sorted(expected.items())
    assert len(out.files) <= spill.FANIN and max(chunks) == 3 and len(chunks) > 4  # spilled, merged in rounds
    assert [(r.id, r.reason) for r in out] == sorted(expected.items())  # read again: the same
    assert list(SortedRows(str(tmp_path))) == []
    assert {os.path.dirname(f) for f in out.files} == {str(tmp_path)}  # removed with the caller's folder


def test_as_many_files_as_merged_at_once_are_read_without_a_merge_round(tmp_path, monkeypatch):
    tiny(monkeypatch)
    out = SortedRows(str(tmp_path), [CatalogRow(id=f"i{n}", status="failed") for n in range(6)])
    files = out.seal().files[:]
    assert len(files) == spill.FANIN and len(list(out)) == 6 and out.files == files


def damaged(dest):
    """`migrated` with a lost manifest, an unreadable run and a lost stored copy."""
    arc = migrated(dest)
    loc = open_location(dest)
    run = arc.catalog.manifest().runs[-1]
    blob = loc.fs.cat_file(loc.path(run.key))
    loc.fs.pipe_file(loc.path(run.key), b"x" * run.footer_offset + blob[run.footer_offset:])
    loc.fs.rm_file(loc.path(arc.batch_object("originals", "bk")))
    return Archive.open(dest, mode="a")


def answer(arc):
    with diagnose(arc) as diag:
        out = (diag.catalog, list(diag.data), diag.recovered, diag.indexed, diag.generation, diag.unreferenced,
               [(r.id, r.batch_id, r.index) for r in diag.rows])
    assert not os.path.exists(diag.folder)  # the spill goes with the diagnosis
    return out


def test_a_tiny_chunk_gives_the_in_memory_answer(dest, monkeypatch):
    """Spilling every 3 rows and merging 2 files at a time diagnoses and rebuilds as one chunk does."""
    arc = damaged(dest)
    whole = answer(arc)
    assert whole[2] == 10 and any("unreadable" in line for line in whole[0]) and len(whole[1]) == 2
    tiny(monkeypatch)
    assert answer(arc) == whole
    with diagnose(arc) as diag:
        new = rebuild(arc, diag)
    assert sum(r.rows for r in new.runs) == 10
    monkeypatch.undo()
    assert answer(Archive.open(dest))[2:4] == (10, 10)


def test_lost_lines_live_in_the_spill_folder_not_in_memory(dest, tmp_path):
    """A diagnosis names each row with lost data in a file (10 M lines when every object is
    gone), in the order they came, each line once however often it is read."""
    lines = repair.Lines(str(tmp_path))
    assert list(lines) == [] and not lines
    for line in ["a.png: gone", "odd\nname.png: gone", "z.png: gone ", "zX.png: goneX"]:
        lines.append(line)
    assert list(lines) == list(lines) == ["a.png: gone", "odd name.png: gone", "z.png: gone ", "zX.png: goneX"]
    assert os.path.getsize(lines.path) > 0 and len(lines) == 4
    arc = damaged(dest)
    with diagnose(arc) as diag:
        assert [line.split(":")[0] for line in diag.data] == sorted(KEPT)  # the lost stored copy's rows
        assert os.path.dirname(diag.data.path) == diag.folder and os.path.getsize(diag.data.path) > 0


def v1_rows(n, batches):
    return {f"b{b}": [CatalogRow(id=f"img{b:03d}-{j:04d}.png", status="failed", reason=f"b{b}")
                      for j in range(n // batches)] for b in range(batches)}


@pytest.mark.parametrize("chunk", [7, spill.CHUNK_ROWS])
def test_conversion_with_a_tiny_chunk_is_the_in_memory_answer(dest, monkeypatch, chunk):
    new_archive(dest)
    late = {"late": [CatalogRow(id="img000-0001.png", status="failed", reason="late")]}
    expected = write_v1_catalog(open_location(dest), v1_rows(60, 6), late, partitions=8)
    tiny(monkeypatch, chunk=chunk)
    Archive.open(dest, mode="a").compact()
    arc = Archive.open(dest)
    assert [r.level for r in arc.catalog.manifest().runs] == [1]
    assert [(r.id, r.reason) for r in arc.rows()] == sorted((i, r.reason) for i, r in expected.items())


class Live:
    """Counts the CatalogRow objects alive (made by `__init__` or unpickled from a spill file)
    and remembers the most seen at a spill or at any row written into a run."""

    def __init__(self, monkeypatch, module):
        self.rows, self.peak = {}, 0  # id -> weak reference (rows are unhashable)
        init, real = CatalogRow.__init__, module.write_run

        def counted(row, *args, **kwargs):
            init(row, *args, **kwargs)
            self.add(row)

        def setstate(row, state):
            row.__dict__.update(state)
            self.add(row)

        def write_run(loc, key, rows, level):
            return real(loc, key, map(self.sample, rows), level)
        monkeypatch.setattr(CatalogRow, "__init__", counted)
        monkeypatch.setattr(CatalogRow, "__setstate__", setstate, raising=False)
        monkeypatch.setattr(spill, "on_spill", self.sample)
        monkeypatch.setattr(module, "write_run", write_run)

    def add(self, row):
        key = id(row)
        self.rows[key] = weakref.ref(row, lambda _ref: self.rows.pop(key, None))

    def sample(self, passing=None):
        self.peak = max(self.peak, len(self.rows))
        return passing


N = 2_000


def v1_archive(dest, monkeypatch):
    """A v1 archive of N folded rows (16 partitions of ~125 rows, 40 folded copies of 50);
    the spill set to chunks of 100 rows, merged 4 files at a time, 16 rows a block."""
    new_archive(dest)
    set_format_version(open_location(dest), 1)
    write_v1_catalog(open_location(dest), v1_rows(N, 40), partitions=16)
    tiny(monkeypatch, chunk=100, fanin=4, block=16)


def test_repair_never_holds_the_index_in_memory(dest, monkeypatch, capsys):
    """`lbdask repair --apply` as a user runs it: open, diagnose, take the lease, rebuild, report."""
    v1_archive(dest, monkeypatch)
    loc = open_location(dest)
    loc.fs.rm_file(loc.path("catalog", "manifests", f"{1:010d}.json"))
    live = Live(monkeypatch, repair)
    assert main(["repair", dest, "--apply"]) == 0
    assert capsys.readouterr().out.endswith(f"rebuilt the catalog index: {N} compacted row(s) in generation 2\n")
    assert 0 < live.peak < N // 4  # chunks, blocks and one object's rows, not the N rows (all N before)
    monkeypatch.undo()
    assert len(list(Archive.open(dest).rows())) == N


def test_conversion_never_holds_the_index_in_memory(dest, monkeypatch):
    v1_archive(dest, monkeypatch)
    live = Live(monkeypatch, compaction)
    Archive.open(dest, mode="a").compact()
    assert 0 < live.peak < N // 4  # all N before
    monkeypatch.undo()
    assert sum(r.rows for r in Archive.open(dest).catalog.manifest().runs) == N
