"""Compaction is a compare-and-swap: concurrent compactors and crashes never lose a committed row."""
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lbdask.archive import compaction
from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location
from tests.support.crash import Crash, crash_at

HERE = Path(__file__).resolve().parents[1]


def rows_for(batch, n, tag=""):
    return [CatalogRow(id=f"{batch}/{j}", status="failed", reason=f"{batch}{tag}") for j in range(n)]


def assert_each_row_once(cat, expected):
    ids = Counter(r.id for r in Catalog(cat.loc, partitions=4).rows())
    assert set(ids) == set(expected) and set(ids.values()) == {1}
    fresh = Catalog(cat.loc, partitions=4)
    for image_id, reason in expected.items():
        assert fresh.get_row(image_id).reason == reason


def test_each_fold_adds_a_level_0_run_in_front_and_keeps_the_older_rows(dest):
    cat = Catalog(open_location(dest), partitions=1)
    cat.commit("a", rows_for("a", 3))
    assert compact(cat) == {"batches": 1, "rows": 3, "generation": 1, "stepped_back": 0}
    cat.commit("b", rows_for("b", 2))
    assert compact(cat)["generation"] == 2
    assert sorted(r.id for r in Catalog(cat.loc, partitions=1).rows()) == ["a/0", "a/1", "a/2", "b/0", "b/1"]
    loc = cat.loc
    runs = cat.manifest().runs
    assert [(r.level, r.rows, r.min_id, r.max_id) for r in runs] == [(0, 2, "b/0", "b/1"), (0, 3, "a/0", "a/2")]
    assert runs[0].key.startswith("catalog/runs/0000000002-") and runs[1].key.startswith("catalog/runs/0000000001-")
    assert sorted(loc.fs.find(loc.path("catalog", "runs"))) == sorted(loc.path(r.key) for r in runs)
    assert sorted(p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path("catalog", "manifests"))) == [
        "0000000002.json", "latest.json"]
    assert cat.manifests.discover().generation == 2 and cat.manifest().log_next == 4
    slots = [p.rsplit("/", 2)[-2:] for p in loc.fs.find(loc.path("catalog", "log"))]
    assert slots == [["00000000", f"{n:012d}.json"] for n in range(4)]  # a, b and the fences 1, 3: never deleted
    assert not loc.fs.exists(loc.path("catalog", "batches", "a.jsonl.gz"))
    assert cat.is_committed("a") and cat.is_committed("b") and not cat.is_committed("c")


def test_merges_keep_the_newest_row_of_each_id_and_bound_the_runs(tmp_path, monkeypatch):
    from lbdask.archive import levels

    real = levels.plan_merge
    monkeypatch.setattr(compaction, "plan_merge", lambda runs: real(runs, l0_runs=2, fanout=2, base_rows=4))
    cat = Catalog(open_location(str(tmp_path / "arc")))
    expected = {}
    for b in range(12):
        ids = [f"i{(b * 3 + j) % 10}" for j in range(3)]  # ids come back in later batches
        cat.commit(f"b{b:02d}", [CatalogRow(id=i, status="failed", reason=f"b{b}") for i in ids])
        expected.update({i: f"b{b}" for i in ids})
        compact(cat)
        runs = cat.manifest().runs
        assert sum(r.level == 0 for r in runs) <= 2 and [r.level for r in runs] == sorted(r.level for r in runs)
    assert max(r.level for r in runs) >= 2  # merged more than once
    assert_each_row_once(cat, expected)
    assert sorted(cat.loc.fs.find(cat.loc.path("catalog", "runs"))) == sorted(cat.loc.path(r.key) for r in runs)
    assert sorted(os.listdir(cat.loc.path("catalog", "runs"))) == sorted(r.key.rsplit("/", 1)[-1] for r in runs)


def test_a_merge_that_loses_the_race_rebases_when_its_group_is_still_there(tmp_path, monkeypatch):
    """A rival folds a new batch between the merge's write and its commit: the merged run goes
    into the rival's manifest in place of the same group, without merging again."""
    from lbdask.archive import levels

    real = levels.plan_merge
    monkeypatch.setattr(compaction, "plan_merge", lambda runs: real(runs, l0_runs=2))
    cat = Catalog(open_location(str(tmp_path / "arc")))
    for b in range(2):
        cat.commit(f"b{b}", rows_for(f"b{b}", 2))
        compact(cat)
    cat.commit("b2", rows_for("b2", 2))
    real_create, rival, written = cat.manifests.create, Catalog(cat.loc), []

    def create_after_rival(manifest):
        if manifest.folded == [] and not written:  # the merge's commit: a rival folds first
            written.append(manifest.runs[0].key)
            rival.commit("r", rows_for("r", 1))
            monkeypatch.setattr(compaction, "plan_merge", lambda runs: None)
            compaction._attempt(rival)
            monkeypatch.setattr(compaction, "plan_merge", lambda runs: real(runs, l0_runs=2))
        return real_create(manifest)

    monkeypatch.setattr(cat.manifests, "create", create_after_rival)
    compact(cat)
    runs = Catalog(cat.loc).manifest().runs
    assert [r.level for r in runs] == [0, 1] and runs[1].key == written[0]  # rebased, not redone
    assert_each_row_once(cat, {**{f"b{b}/{j}": f"b{b}" for b in range(3) for j in range(2)}, "r/0": "r"})


def start_together(procs: list[subprocess.Popen], gate: Path, names: tuple[str, ...]) -> None:
    """Let the compactor processes (tests/support/compactor_proc.py) start their rounds once all are ready."""
    while not all((gate / f"{n}.ready").exists() for n in names):
        assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs if p.poll() is not None]
        time.sleep(0.01)
    (gate / "go").touch()


def test_two_compactors_in_separate_processes_never_lose_a_row(dest, tmp_path):
    rounds = 40 if dest.startswith("/") else 10
    gate, names = tmp_path / "gate", ("p", "q")
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, str(HERE / "support" / "compactor_proc.py"), dest, name, str(rounds),
                               str(gate)], stderr=subprocess.PIPE, text=True) for name in names]
    start_together(procs, gate, names)
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cat = Catalog(open_location(dest), partitions=4)
    compact(cat)
    expected = {f"{n}/{r}/{j}": f"r{r}" for n in ("p", "q") for r in range(rounds) for j in range(3)}
    assert_each_row_once(cat, expected)
    assert cat.batch_names() == []


def test_a_first_compaction_between_listing_manifests_and_folded_batches_is_not_a_lost_manifest(dest):
    """The race CI met: q lists no manifest, p compacts for the first time, q sees p's folded batch."""
    loc = open_location(dest)
    p, q = Catalog(loc, partitions=4), Catalog(loc, partitions=4)
    p.commit("a", rows_for("a", 3))
    real_generations, calls = q.manifests.generations, []

    def generations_while_p_compacts():
        listed = real_generations()
        if not calls:
            compact(p)  # runs between q's first listing and its look at the folded batches
        calls.append(listed)
        return listed

    q.manifests.generations = generations_while_p_compacts
    assert q.manifest().generation == 1 and calls[0] == []
    assert q.get_row("a/0").reason == "a"


def test_a_compactor_that_loses_the_race_retries_and_removes_its_attempt(tmp_path, monkeypatch):
    cat = Catalog(open_location(str(tmp_path / "arc")), partitions=4)
    cat.commit("a", rows_for("a", 3))
    rival = Catalog(cat.loc, partitions=4)
    real_create = cat.manifests.create

    def create_after_rival(manifest):
        if manifest.generation == 1:  # a rival compactor commits generation 1 first
            rival.commit("r", rows_for("r", 2))
            assert compact(rival)["generation"] == 1
            rival.commit("s", rows_for("s", 1))  # left for the retry to fold
        return real_create(manifest)

    monkeypatch.setattr(cat.manifests, "create", create_after_rival)
    assert compact(cat) == {"batches": 1, "rows": 1, "generation": 2, "stepped_back": 0}
    assert_each_row_once(cat, {**{f"a/{j}": "a" for j in range(3)}, **{f"r/{j}": "r" for j in range(2)}, "s/0": "s"})
    live = {cat.loc.path(r.key) for r in cat.manifest().runs}
    assert set(cat.loc.fs.find(cat.loc.path("catalog", "runs"))) == live  # the lost attempt left nothing


def test_a_crash_after_any_step_of_a_compaction_loses_nothing(dest, monkeypatch):
    """Crash after the k-th store mutation of a compaction, for every k, then compact again."""
    k = 0
    while True:
        root = f"{dest}/k{k}"
        cat = Catalog(open_location(root), partitions=2)
        cat.commit("a", rows_for("a", 3))
        compact(cat)
        cat.commit("b", rows_for("b", 3, "-b"))
        cat.commit("c", rows_for("c", 2))
        calls = []
        with monkeypatch.context() as m:
            m.setattr(compaction, "put_atomic", crash_at(compaction.put_atomic, calls, k))
            m.setattr(compaction, "remove_quietly", crash_at(compaction.remove_quietly, calls, k))
            m.setattr(compaction, "claim_slot", crash_at(compaction.claim_slot, calls, k))
            m.setattr(compaction, "write_run", crash_at(compaction.write_run, calls, k))
            m.setattr(cat.manifests, "create", crash_at(cat.manifests.create, calls, k))
            m.setattr(cat.manifests, "prune", crash_at(cat.manifests.prune, calls, k))
            m.setattr(cat.manifests, "write_hint", crash_at(cat.manifests.write_hint, calls, k))
            try:
                compact(Catalog(cat.loc, partitions=2) if k % 2 else cat)
                finished = True
            except Crash:
                finished = False
        expected = {**{f"a/{j}": "a" for j in range(3)}, **{f"b/{j}": "b-b" for j in range(3)},
                    **{f"c/{j}": "c" for j in range(2)}}
        assert_each_row_once(cat, expected)  # visible right after the crash
        compact(Catalog(cat.loc, partitions=2))
        assert_each_row_once(cat, expected)
        assert Catalog(cat.loc, partitions=2).batch_names() == []
        if finished:
            break
        k += 1
    # fence, run, manifest, 3 folded copies, batch deletion, v1 partitions (none), pruning, hint
    assert k >= 7


def batch_reads_while_compacting(cat, monkeypatch):
    """(reads of each batch object or folded copy, rows parses of catalog objects) during `compact(cat)`."""
    from lbdask.archive import rows as rows_module

    reads, parses = Counter(), []
    real_cat, real_load = cat.loc.fs.cat_file, rows_module.load_rows
    with monkeypatch.context() as m:
        m.setattr(cat.loc.fs, "cat_file", lambda path, *a, **k: (reads.update(
            [path.rsplit("/", 1)[-1]] if "/catalog/batches/" in path or "/catalog/folded/" in path else []),
            real_cat(path, *a, **k))[1])
        m.setattr(rows_module, "load_rows", lambda blob: (parses.append(1), real_load(blob))[1])
        done = compact(cat)
    return done, reads, len(parses)


def test_a_fold_reads_and_parses_each_batch_object_once(tmp_path, monkeypatch):
    from lbdask.archive import catalog as catalog_module

    cat = Catalog(open_location(str(tmp_path / "arc")), partitions=2)
    for name in ("a", "b"):
        cat.commit(name, rows_for(name, 3))
    done, reads, parses = batch_reads_while_compacting(Catalog(cat.loc, partitions=2), monkeypatch)
    assert done["batches"] == 2 and reads == {"a.jsonl.gz": 1, "b.jsonl.gz": 1} and parses == 2  # the first fold
    cat.commit("c", rows_for("c", 2))
    cat.commit("d", rows_for("d", 2))
    with monkeypatch.context() as m:  # a writer killed before its slot: folded by name
        m.setattr(catalog_module, "claim", lambda *_a: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError):
            cat.commit("e", rows_for("e", 1))
    done, reads, parses = batch_reads_while_compacting(Catalog(cat.loc, partitions=2), monkeypatch)
    assert done["batches"] == 3 and reads == {"c.jsonl.gz": 1, "d.jsonl.gz": 1, "e.jsonl.gz": 1} and parses == 3
    assert_each_row_once(cat, {f"{n}/{j}": n for n, k in (("a", 3), ("b", 3), ("c", 2), ("d", 2), ("e", 1))
                               for j in range(k)})
