"""What a lookup, a commit and a listing cost in store requests (counted, not timed), and the
commit log's crash and staleness cases."""
import json

import pytest

from lbdask.archive import catalog as catalog_module
from lbdask.archive import run_writer
from lbdask.archive.catalog import Catalog
from lbdask.archive.commit_log import read_slot
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location
from tests.support.archive import new_archive
from tests.support.store_requests import counting


def rows_for(batch, ids, tag=""):
    return [CatalogRow(id=i, status="failed", reason=f"{batch}{tag}") for i in ids]


def build(dest, n, batches, recent=3):
    """A catalog of `n` compacted rows in `batches` batches, each folded into its own run,
    and `recent` uncompacted one-row batches."""
    cat = Catalog(open_location(dest), partitions=8)
    per = n // batches
    for b in range(batches):
        cat.commit(f"b{b}", rows_for(f"b{b}", [f"img{(j * batches + b) * 7 % n:06d}" for j in range(per)]))
        compact(cat)
    for r in range(recent):
        cat.commit(f"r{r}", rows_for(f"r{r}", [f"new{r}"]))
    return cat


def lookup_costs(dest, n, batches):
    build(dest, n, batches)
    reader = Catalog(open_location(dest), partitions=8)
    costs = []
    with counting(reader.loc) as seen:  # the first (cold) lookup reads the footer and index of every run it needs
        for image_id, expected in (("img000007", "b"), ("img000050-absent", None), ("new1", "r1"), ("img000100", "b")):
            seen.reset()
            row = reader.get_row(image_id)
            assert (row is None) if expected is None else row.reason.startswith(expected)
            costs.append((seen.total, seen.lists))
    return costs


def test_a_lookup_costs_the_same_requests_at_two_sizes_and_never_lists(dest):
    small, large = lookup_costs(dest + "/small", 200, 4), lookup_costs(dest + "/large", 5000, 4)
    assert small == large
    assert all(lists == 0 for _total, lists in small)
    cold, absent, *warm = [total for total, _lists in small]
    # the hint (its generation keeps its slots: no generation probe, no check that it is still
    # there, the log walk would meet a newer one's fence); 3 slots, their batches and the absent one; 4 runs:
    # each its footer and the index partition covering the id, read with its blocks (whose
    # Bloom filter answers, and which hold the id's block: no block read after them); on a
    # folder the first lookup stops at the run that holds the id, so the absent id (the next
    # slot) reads the index of the runs after it
    assert cold + absent <= 1 + 7 + 4 * 2 + 1
    assert all(total <= 2 for total in warm)  # the next slot, at most one block


def many_partitions(monkeypatch):
    monkeypatch.setattr(run_writer, "BLOCK_ROWS", 2)
    monkeypatch.setattr(run_writer, "PARTITION_BLOCKS", 1)  # 2 rows a partition: 600 at 1,200 rows


def test_an_open_handle_looks_up_an_id_in_at_most_two_requests_once_it_holds_the_index(dest, monkeypatch):
    """Runs of many index partitions (on a folder more than the 256 a handle kept before): once
    an open handle holds the index, a lookup whose block it does not hold is the slot probe and
    the block, at 300 as at 1,200 rows (on S3, where each read is slower, 40 and 160)."""
    many_partitions(monkeypatch)
    costs = []
    for n in ((40, 160) if dest.startswith("s3://") else (300, 1200)):
        build(f"{dest}/{n}", n, 2, recent=1)
        reader = Catalog(open_location(f"{dest}/{n}"), partitions=8)
        manifest = reader.manifest()
        for run in manifest.runs:  # what a serving handle holds after a while: every index partition
            for p in range(len(reader.runs.footer(run))):
                reader.runs.partition(run, p)
        with counting(reader.loc) as seen:
            for image_id in ("img000011", "img000039", "img000023-absent", "img000030"):
                seen.reset()
                assert (reader.get_row(image_id) is None) == image_id.endswith("absent")
                costs.append((n, seen.total, seen.lists))
    assert [c[1:] for c in costs[:4]] == [c[1:] for c in costs[4:]]
    assert all(total <= 2 and lists == 0 for _n, total, lists in costs)


def test_an_open_handle_reads_an_index_partition_and_the_block_in_one_request(dest, monkeypatch):
    """An open handle that has not read the index partitions an id needs, in two runs, the id in
    the older one: the slot probe and, per run, one read of the partition with its blocks (the
    newer run's Bloom filter says no, the older one's block came with its partition): 3, where
    a partition and then a block were 4, at two sizes."""
    monkeypatch.setattr(run_writer, "BLOCK_ROWS", 2)
    monkeypatch.setattr(run_writer, "PARTITION_BLOCKS", 4)  # 8 rows a partition
    costs = []
    for n in ((40, 160) if dest.startswith("s3://") else (300, 1200)):
        build(f"{dest}/{n}", n, 2, recent=1)
        reader = Catalog(open_location(f"{dest}/{n}"), partitions=8)
        for run in reader.manifest().runs:  # opened: manifest, slots and footers known, no index partition
            reader.runs.footer(run)
        older = sorted(f"img{(j * 2) * 7 % n:06d}" for j in range(n // 2))  # batch b0's ids: the older run
        with counting(reader.loc) as seen:
            for image_id in (older[0], older[len(older) // 2], older[-1]):  # three partitions apart
                seen.reset()
                assert reader.get_row(image_id).reason == "b0"
                costs.append((seen.total, seen.lists))
    assert costs[:3] == costs[3:]
    assert all(total <= 3 and lists == 0 for total, lists in costs)


def test_a_warm_lookup_of_a_recent_commit_costs_two_probes(dest):
    cat = build(dest, 40, 2)
    assert cat.get_row("new0").reason == "r0"
    with counting(cat.loc) as seen:
        assert cat.get_row("new2").reason == "r2"
    assert seen.total <= 2 and seen.lists == 0


def test_a_commit_asks_is_committed_once_and_costs_at_most_four_requests(dest):
    cat = Catalog(open_location(dest), partitions=8)
    cat.commit("first", rows_for("first", ["a"]))  # a fresh handle finds its log position once
    with counting(cat.loc) as seen:
        assert not cat.is_committed("second")
        assert cat.commit("second", rows_for("second", ["b"]))
    # two HEADs in is_committed (batch object, folded copy), the batch object and its slot
    assert seen.lists == 0 and seen.total <= 4
    assert seen.calls["head_object" if cat.loc.is_remote else "exists"] <= 2
    assert not cat.commit("second", rows_for("second", ["b"]))  # asked again: it is committed now


def test_a_commit_that_loses_its_slot_to_another_writer_costs_one_more_create_and_no_head_of_the_log(dest):
    loc = open_location(dest)
    writer, other = Catalog(loc, partitions=8), Catalog(loc, partitions=8)
    writer.commit("a", rows_for("a", ["x"]))  # slot 0: the writer's next try is slot 1
    other.commit("b", rows_for("b", ["y"]))  # slot 1, taken meanwhile
    with counting(writer.loc) as seen:
        assert writer.commit("c", rows_for("c", ["z"]))
    # is_committed's two HEADs, the batch object, the failed create of slot 1 and the create of slot 2
    assert seen.lists == 0 and seen.total <= 5, seen.calls
    assert seen.calls["head_object" if loc.is_remote else "exists"] <= 2, seen.calls
    assert read_slot(writer.log, 2).batch == "c" and read_slot(writer.log, 3) is None
    assert {Catalog(loc, partitions=8).get_row(i).reason for i in "xyz"} == {"a", "b", "c"}


def test_a_crash_between_the_batch_object_and_its_slot_shows_the_batch_after_the_next_compaction(dest, monkeypatch):
    cat = Catalog(open_location(dest), partitions=8)
    cat.commit("a", rows_for("a", ["x"]))
    compact(cat)  # before the first compaction lookups list the batch objects (writers before the log)

    def crash(*_args):
        raise RuntimeError("killed before the announcement")

    with monkeypatch.context() as m:
        m.setattr(catalog_module, "claim", crash)
        with pytest.raises(RuntimeError):
            cat.commit("b", rows_for("b", ["y"]))
    fresh = Catalog(cat.loc, partitions=8)
    assert fresh.get_row("x").reason == "a" and fresh.get_row("y") is None  # unannounced: not found by lookups
    assert fresh.is_committed("b")  # a retried task does not write it twice
    assert compact(fresh)["batches"] == 1  # compaction lists batches/: it folds the unannounced one
    assert Catalog(cat.loc, partitions=8).get_row("y").reason == "b"
    assert fresh.get_row("y").reason == "b"


def test_a_writer_whose_cursor_a_compaction_passed_announces_after_it(dest):
    loc = open_location(dest)
    writer, other = Catalog(loc, partitions=8), Catalog(loc, partitions=8)
    writer.commit("a", rows_for("a", ["x"]))  # slot 0; the writer's next try is slot 1
    other.commit("b", rows_for("b", ["y"]))  # slot 1
    other.commit("c", rows_for("c", ["z"]))  # slot 2
    compact(other)  # folds slots 0-2 (fence at 3); slots are never deleted
    writer.commit("d", rows_for("d", ["w"]))  # slot 1 is taken: the writer moves on to the end
    assert read_slot(writer.log, 1).batch == "b" and read_slot(writer.log, 4).batch == "d"
    assert other.manifest().log_next == 4
    assert Catalog(loc, partitions=8).get_row("w").reason == "d"


def test_a_warm_handle_sees_a_commit_that_was_folded_since_its_last_lookup(dest):
    loc = open_location(dest)
    reader, writer = Catalog(loc, partitions=8), Catalog(loc, partitions=8)
    writer.commit("a", rows_for("a", ["x"]))
    assert reader.get_row("x").reason == "a" and reader.get_row("y") is None
    writer.commit("b", rows_for("b", ["y"]))
    compact(writer)  # y's slot is folded and deleted before the reader probes it
    writer.commit("c", rows_for("c", ["x"], "-new"))
    assert reader.get_row("y").reason == "b" and reader.get_row("x").reason == "c-new"


def test_a_manifest_of_a_writer_that_deleted_log_slots_is_probed_for_newer_ones(dest):
    """A hint without `slots_kept` (written before compactions kept log slots: a newer
    generation's fence may be gone) costs the generation probe and the check, as before."""
    build(dest, 40, 2, recent=0)
    loc = open_location(dest)
    costs = []
    for strip in (True, False):
        with counting(loc) as seen:
            assert Catalog(loc, partitions=8).get_row("img000007") is not None
        costs.append(seen.total)
        if strip:
            hint = Catalog(loc, partitions=8).manifests.hint_path()
            data = json.loads(loc.fs.cat_file(hint))
            del data["slots_kept"]
            loc.fs.pipe_file(hint, json.dumps(data).encode())
    assert costs[1] == costs[0] + 2
    assert Catalog(loc, partitions=8).manifest().slots_kept is False  # read from the hint as written


def test_a_stale_hint_is_not_trusted(dest):
    cat = Catalog(open_location(dest), partitions=8)
    cat.commit("a", rows_for("a", ["x"]))
    compact(cat)
    stale = cat.loc.fs.cat_file(cat.manifests.hint_path())
    for name in ("b", "c"):
        cat.commit(name, rows_for(name, [name]))
        compact(cat)
    cat.loc.fs.pipe_file(cat.manifests.hint_path(), stale)  # a compactor that wrote its hint late
    fresh = Catalog(cat.loc, partitions=8)
    assert fresh.manifest().generation == 3 and fresh.get_row("c").reason == "c"


def test_rows_come_in_ascending_id_order_once_each_newest_winning(dest):
    cat = Catalog(open_location(dest), partitions=8)
    cat.commit("a", rows_for("a", [f"i{j:02d}" for j in range(0, 40, 2)]))
    compact(cat)
    cat.commit("b", rows_for("b", [f"i{j:02d}" for j in range(0, 40, 3)]))
    listed = list(Catalog(cat.loc, partitions=8).rows())
    assert [r.id for r in listed] == sorted({f"i{j:02d}" for j in range(0, 40, 2)} | {f"i{j:02d}" for j in range(0, 40, 3)})
    assert {r.id: r.reason for r in listed}["i06"] == "b" and {r.id: r.reason for r in listed}["i02"] == "a"


#: Operations that change the store (a folder's and S3's).
WRITES = frozenset({"put_atomic", "put_exclusive", "pipe_file", "put_file", "rm", "rm_file", "mv",
                    "put_object", "delete_object", "delete_objects", "post"})


def test_committing_a_committed_batch_again_writes_nothing(dest):
    arc = new_archive(dest)
    big = CatalogRow(id="big.png", status="kept", chunks=[("tEXt", b"workflow\x00" + b"{}" * 400)])
    assert not arc.is_committed("b1") and arc.commit("b1", [big])  # asked once: two HEADs
    assert arc.loc.fs.exists(arc.loc.path(arc.batch_object("meta", "b1")))
    compact(arc.catalog)
    for _ in ("unfolded", "folded"):
        with counting(arc.loc) as seen:
            assert not arc.commit("b1", [big])  # neither the batch object nor its PNG metadata again
        assert sum(n for op, n in seen.calls.items() if op in WRITES) == 0 and seen.total <= 2
        compact(arc.catalog)
