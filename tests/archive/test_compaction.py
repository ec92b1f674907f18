"""Compaction is a compare-and-swap: concurrent compactors and crashes never lose a committed row."""
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from lbdask.archive import compaction
from lbdask.archive.catalog import Catalog, partition_of
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location

HERE = Path(__file__).resolve().parents[1]


def rows_for(batch, n, tag=""):
    return [CatalogRow(id=f"{batch}/{j}", status="failed", reason=f"{batch}{tag}") for j in range(n)]


def assert_each_row_once(cat, expected):
    ids = Counter(r.id for r in Catalog(cat.loc, partitions=4).rows())
    assert set(ids) == set(expected) and set(ids.values()) == {1}
    fresh = Catalog(cat.loc, partitions=4)
    for image_id, reason in expected.items():
        assert fresh.get_row(image_id).reason == reason


def test_compacting_twice_into_the_same_partition_keeps_the_older_rows(dest):
    cat = Catalog(open_location(dest), partitions=1)
    cat.commit("a", rows_for("a", 3))
    assert compact(cat) == {"batches": 1, "rows": 3, "generation": 1, "stepped_back": 0}
    cat.commit("b", rows_for("b", 2))
    assert compact(cat)["generation"] == 2
    assert sorted(r.id for r in Catalog(cat.loc, partitions=1).rows()) == ["a/0", "a/1", "a/2", "b/0", "b/1"]
    loc = cat.loc
    index = loc.fs.find(loc.path("catalog", "index"))
    assert len(index) == 1 and "/g000002-" in index[0]  # the superseded partition file is gone
    assert sorted(p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path("catalog", "manifests"))) == [
        "0000000002.json", "latest.json"]
    assert cat.manifests.discover().generation == 2 and cat.manifest().log_next == 4
    assert [p.rsplit("/", 1)[-1] for p in loc.fs.ls(loc.path("catalog", "log"))] == ["000000000003.json"]  # gen 2's fence
    assert not loc.fs.exists(loc.path("catalog", "batches", "a.jsonl.gz"))
    assert cat.is_committed("a") and cat.is_committed("b") and not cat.is_committed("c")


def test_rows_land_in_their_hash_partition(tmp_path):
    cat = Catalog(open_location(str(tmp_path / "arc")), partitions=16)
    cat.commit("a", rows_for("a", 40))
    compact(cat)
    manifest = cat.manifest()
    for part, key in manifest.files.items():
        assert {partition_of(r, 16) for r in cat.partition_rows(key)} == {part}


def test_two_compactors_in_separate_processes_never_lose_a_row(dest):
    rounds = 40 if dest.startswith("/") else 10
    start_at = str(time.time() + 5)
    procs = [subprocess.Popen([sys.executable, str(HERE / "support" / "compactor_proc.py"), dest, name, str(rounds), start_at],
                              stderr=subprocess.PIPE, text=True) for name in ("p", "q")]
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
    live = {cat.loc.path(k) for k in cat.manifest().files.values()}
    assert set(cat.loc.fs.find(cat.loc.path("catalog", "index"))) == live  # the lost attempt left nothing


class Crash(Exception):
    pass


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

        def counting(real):
            def wrapper(*args, **kwargs):
                if len(calls) == k:
                    raise Crash
                calls.append(real.__name__)
                return real(*args, **kwargs)
            wrapper.__name__ = real.__name__
            return wrapper

        with monkeypatch.context() as m:
            m.setattr(compaction, "put_atomic", counting(compaction.put_atomic))
            m.setattr(compaction, "remove_quietly", counting(compaction.remove_quietly))
            m.setattr(compaction, "claim_slot", counting(compaction.claim_slot))
            m.setattr(cat.manifests, "create", counting(cat.manifests.create))
            m.setattr(cat.manifests, "prune", counting(cat.manifests.prune))
            m.setattr(cat.manifests, "write_hint", counting(cat.manifests.write_hint))
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
    # fence, partitions, manifest, folded copies, batch deletion, slot deletion, superseded files, pruning, hint
    assert k >= 9
