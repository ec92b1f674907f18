"""Archives written before catalog v2 (format version 1) and before the fan-out catalog layout
(version 2) open, read, list, commit, compact and convert without loss."""
import shutil

import pytest

from lbdask.archive import FORMAT_VERSION, Archive, CatalogRow, relayout
from lbdask.archive import store as store_module
from lbdask.archive.catalog import fan
from lbdask.archive.commit_log import read_slot
from lbdask.archive.creation import set_format_version
from lbdask.archive.relayout import fan_out, flat_objects
from lbdask.archive.repair import _first_slot, diagnose
from lbdask.archive.store import FLAT_VERSION
from lbdask.cli import main
from lbdask.storage import open_location
from tests.support.archive import new_archive
from tests.support.crash import Crash, crash_at
from tests.support.v1_catalog import write_v1_catalog


def v1_archive(dest):
    """An archive as lbdask wrote it before issue 25: format version 1, a hash-partitioned
    catalog with folded batches and one batch not yet folded."""
    new_archive(dest)
    loc = open_location(dest)
    set_format_version(loc, 1)
    folded = {f"b{b}": [CatalogRow(id=f"img{b}{j}.png", status="failed", reason=f"b{b}") for j in range(5)]
              for b in range(4)}
    late = {"late": [CatalogRow(id="img00.png", status="failed", reason="late"),
                     CatalogRow(id="new.png", status="failed", reason="late")]}
    rows = write_v1_catalog(loc, folded, late, partitions=16)
    return {i: r.reason for i, r in rows.items()}


def listing(dest):
    return [(r.id, r.reason) for r in Archive.open(dest).rows()]


@pytest.mark.parametrize("how", ["compact", "upgrade"])
def test_v1_archive_converts(dest, how, capsys):
    """A version 1 archive reads and lists as it is, and converts (compaction or upgrade) losing nothing."""
    expected = v1_archive(dest)
    arc = Archive.open(dest)
    assert arc.format_version == 1 and arc.catalog.manifest().version == 1
    assert arc.get_row("img00.png").reason == "late" and arc.get_row("img31.png").reason == "b3"
    assert listing(dest) == sorted(expected.items())
    if how == "compact":
        Archive.open(dest, mode="a").compact()  # converts the catalog, keeps the flat layout
    else:
        assert main(["upgrade", dest]) == 0
        assert "from archive format version 1 to 3" in capsys.readouterr().out
    arc = Archive.open(dest)
    assert arc.format_version == (FLAT_VERSION if how == "compact" else FORMAT_VERSION)
    assert arc.catalog.fanned == (how == "upgrade") and any(flat_objects(arc)) == (how == "compact")
    manifest = arc.catalog.manifest()
    assert manifest.version == 2 and manifest.files == {} and sum(r.rows for r in manifest.runs) == len(expected)
    assert listing(dest) == sorted(expected.items())
    assert all(arc.get_row(i).reason == reason for i, reason in expected.items())
    assert main(["upgrade", dest]) == 0
    assert "already archive format version 3" in capsys.readouterr().out or how == "compact"


def rows_of(batch, n=3):
    return [CatalogRow(id=f"{batch}-{j}.png", status="failed", reason=batch) for j in range(n)]


def flat_archive(dest):
    """An archive as lbdask wrote it before the fan-out catalog layout (format version 2):
    two batches folded, one committed after the last compaction."""
    new_archive(dest)
    set_format_version(open_location(dest), FLAT_VERSION)
    arc = Archive.open(dest, mode="a")
    for b in ("b0", "b1", "b2"):
        assert arc.commit(b, rows_of(b))
        if b != "b2":
            arc.compact()
    return {r.id: r.reason for b in ("b0", "b1", "b2") for r in rows_of(b)}


def catalog_files(dest, folder):
    loc = open_location(dest)
    root = loc.path("catalog", folder) + "/"
    return sorted(p[len(root):] for p in loc.fs.find(loc.path("catalog", folder)))


def assert_reads(dest, expected):
    arc = Archive.open(dest)
    assert [(r.id, r.reason) for r in arc.rows()] == sorted(expected.items())
    assert all(Archive.open(dest).get_row(i).reason == reason for i, reason in expected.items())
    assert all(arc.catalog.is_committed(b) for b in {r for r in expected.values()})


def test_a_flat_archive_reads_commits_compacts_and_upgrades_to_the_fan_out_layout(tmp_path, capsys):
    dest = str(tmp_path / "arc")  # the layout is the same on S3: test_v1_archive_converts upgrades there
    expected = flat_archive(dest)
    arc = Archive.open(dest, mode="a")
    assert arc.format_version == 2 and not arc.catalog.fanned
    assert catalog_files(dest, "folded") == ["b0.jsonl.gz", "b1.jsonl.gz"]  # written the old way
    assert catalog_files(dest, "log") == [f"{n:012d}.json" for n in range(5)]  # b0, fence, b1, fence, b2
    assert_reads(dest, expected)
    assert arc.commit("b3", rows_of("b3")) and arc.compact()["batches"] == 2  # the flat layout goes on
    expected.update({r.id: "b3" for r in rows_of("b3")})
    assert catalog_files(dest, "log")[-1] == "000000000006.json" and "b3.jsonl.gz" in catalog_files(dest, "folded")
    assert Archive.open(dest).format_version == 2
    assert main(["upgrade", dest]) == 0
    assert "from archive format version 2 to 3" in capsys.readouterr().out
    arc = Archive.open(dest, mode="a")
    assert arc.format_version == FORMAT_VERSION == 3 and arc.catalog.fanned and flat_objects(arc) == ([], [])
    assert catalog_files(dest, "folded") == sorted(f"{fan(b)}/{b}.jsonl.gz" for b in ("b0", "b1", "b2", "b3"))
    assert catalog_files(dest, "log") == ["00000000/000000000007.json"]  # a fence where the fanned log starts
    assert_reads(dest, expected)
    assert arc.commit("b4", rows_of("b4")) and not arc.commit("b0", rows_of("b0"))
    expected.update({r.id: "b4" for r in rows_of("b4")})
    assert_reads(dest, expected)  # an unfolded commit in the fanned log
    arc.compact()
    assert_reads(dest, expected)
    assert not diagnose(arc).needs_rebuild
    assert main(["upgrade", dest]) == 0 and "already archive format version 3" in capsys.readouterr().out


def test_a_crash_after_any_step_of_the_fan_out_loses_nothing(tmp_path, monkeypatch):
    """Kill `fan_out` after its k-th store mutation, for every k: the archive reads whole in
    whatever layout it was left, and a rerun (as `lbdask upgrade` does) completes it."""
    template = str(tmp_path / "template")
    expected = flat_archive(template)
    Archive.open(template, mode="a").compact()
    k = 0
    while True:
        dest = str(tmp_path / f"k{k}")
        shutil.copytree(template, dest)
        calls = []
        with monkeypatch.context() as m:
            for name in ("put_atomic", "remove_quietly", "claim"):
                m.setattr(relayout, name, crash_at(getattr(relayout, name), calls, k))
            m.setattr(store_module, "set_format_version", crash_at(store_module.set_format_version, calls, k))
            try:
                fan_out(Archive.open(dest, mode="a"), FORMAT_VERSION)
                finished = True
            except Crash:
                finished = False
        assert_reads(dest, expected)  # right after the crash
        arc = Archive.open(dest, mode="a")
        arc.compact()
        fan_out(arc, FORMAT_VERSION)
        assert Archive.open(dest).format_version == 3 and flat_objects(arc) == ([], [])
        assert arc.commit("late", rows_of("late"))
        assert_reads(dest, {**expected, **{r.id: "late" for r in rows_of("late")}})
        assert not diagnose(arc).needs_rebuild
        start, log_next = _first_slot(arc.catalog), arc.catalog.manifest().log_next  # with the manifest lost
        assert start >= log_next and all(read_slot(arc.catalog.log, n).fence for n in range(log_next, start))
        if finished:
            break
        k += 1
    assert k == 6  # 3 folded copies, the fence, the format version, the deletions


def test_a_rerun_after_a_crash_past_the_fence_claims_no_second_one_and_counts_what_it_removed(tmp_path, monkeypatch):
    """Killed after claiming the fence (before recording version 3), a rerun finds the fence at
    `log_next` and claims none; stray objects of `catalog/folded/` that are no folded copy (an
    interrupted write's temporary file) are neither copied nor removed; the count returned is
    the flat objects removed."""
    dest = str(tmp_path / "arc")
    flat_archive(dest)
    arc = Archive.open(dest, mode="a")
    arc.compact()
    stray = open_location(dest).path("catalog", "folded", "b0.jsonl.gz.tmp-0123456789abcdef")
    with open(stray, "wb") as f:
        f.write(b"partial")
    with monkeypatch.context() as m:
        m.setattr(store_module, "set_format_version", crash_at(store_module.set_format_version, [], 0))
        with pytest.raises(Crash):
            fan_out(Archive.open(dest, mode="a"), FORMAT_VERSION)
    log_next = arc.catalog.manifest().log_next
    assert fan_out(Archive.open(dest, mode="a"), FORMAT_VERSION) == 3 + log_next  # b0..b2 copies, slots 0..log_next-1
    assert catalog_files(dest, "log") == [f"00000000/{log_next:012d}.json"]
    assert sorted(catalog_files(dest, "folded")) == sorted([f"{fan(b)}/{b}.jsonl.gz" for b in ("b0", "b1", "b2")]
                                                           + ["b0.jsonl.gz.tmp-0123456789abcdef"])
