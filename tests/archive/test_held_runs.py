"""Lookups on a catalog of several runs: small runs held whole by the handle (`held_runs.py`), so an
open handle looks an id up in at most 3 store requests while at most two runs are larger, and a
fresh handle reads a small run once (counted on a folder and on the local S3 server; not timed)."""
import random

import pytest

from lbdask.archive import held_runs
from lbdask.archive import run_writer
from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.held_runs import HeldRuns
from lbdask.archive.runs import RunReader
from lbdask.storage import open_location
from tests.archive.test_catalog_requests import rows_for
from tests.support.store_requests import counting

#: Rows of each folded run, oldest first (4 level-0 runs: a fifth fold would merge them).
SIZES = {"folder": (320, 160, 40, 24), "s3": (160, 80, 24, 16)}
#: Ids of the oldest run looked up (fewer on S3, where each lookup is a few HTTP requests to moto).
LOOKUPS = {"folder": 20, "s3": 6}


def several_runs(dest, sizes):
    """A catalog of one run per entry of `sizes` (each spanning the whole id range, tiny index
    partitions of 8 rows) and two unfolded batches; {batch: its ids}."""
    ids = [f"img{i:05d}" for i in range(sum(sizes))]
    random.Random(0).shuffle(ids)
    cat = Catalog(open_location(dest), partitions=8)
    batches, start = {}, 0
    for b, n in enumerate(sizes):
        batches[f"b{b}"] = sorted(ids[start:start + n])
        start += n
        cat.commit(f"b{b}", rows_for(f"b{b}", batches[f"b{b}"]))
        compact(cat)
    for r in range(2):
        batches[f"r{r}"] = [f"new{r}", batches["b0"][r]]  # a new id, and one the oldest run holds
        cat.commit(f"r{r}", rows_for(f"r{r}", batches[f"r{r}"]))
    return batches


@pytest.fixture
def catalog(dest, monkeypatch):
    """(dest, batches, runs newest first) with the two oldest runs too large to be held whole."""
    monkeypatch.setattr(run_writer, "BLOCK_ROWS", 2)
    monkeypatch.setattr(run_writer, "PARTITION_BLOCKS", 4)
    batches = several_runs(dest, SIZES["s3" if dest.startswith("s3://") else "folder"])
    runs = Catalog(open_location(dest), partitions=8).manifest().runs
    assert [r.rows for r in runs] == [len(batches[f"b{b}"]) for b in (3, 2, 1, 0)]
    monkeypatch.setattr(held_runs, "WHOLE_RUN_BYTES", (runs[1].size + runs[2].size) // 2)
    return dest, batches, runs


@pytest.fixture
def holding(catalog, monkeypatch):
    """`catalog`, with small runs held on a folder too (the store holds them on S3 only), so
    the folder counts check the same reads without a network."""
    monkeypatch.setattr(RunReader, "holds", lambda self, run: not held_runs.too_large(run.size))
    return catalog


def test_a_fresh_handle_reads_small_runs_whole_and_then_looks_up_any_id_in_at_most_three_requests(holding):
    """Fresh: hint, two slots and their batches, the absent slot; per small run one read (footer,
    partitions and blocks at once), per large run its footer and one partition with its blocks:
    1 + 5 + 2 + 4 (each run cost 2 before: 14). Then, open: the slot probe and at most one read
    of each large run (the index partition with its blocks, or the block); the small runs cost
    nothing (each cost its partition before: 5). A handle whose first id lies outside every run
    still reads the large runs' footers, so no later lookup reads one before its partition."""
    dest, batches, _runs = holding
    oldest = batches["b0"]
    reader = Catalog(open_location(dest), partitions=8)
    reader.runs = RunReader(reader.loc, block_cache=1)  # (nearly) no block cached between lookups
    with counting(reader.loc) as seen:
        assert reader.get_row(oldest[len(oldest) // 2]).reason == "b0"  # every run's id range holds it
        assert seen.total == 12 and seen.lists == 0
        step = max(1, len(oldest) // LOOKUPS["s3" if dest.startswith("s3://") else "folder"])
        cases = [(i, "b0") for i in oldest[2::step]] + [(f"{i}x", None) for i in oldest[3::2 * step]]
        cases += [(i, b) for b in ("b1", "b2", "b3") for i in batches[b][::len(batches[b]) // 4]]
        cases += [("new0", "r0"), (oldest[1], "r1"), ("new1", "r1")]
        costs = []
        for image_id, batch in cases:
            seen.reset()
            row = reader.get_row(image_id)
            assert (row is None) if batch is None else row.reason == batch
            costs.append((image_id, seen.total, seen.lists))
    assert max(total for _i, total, _l in costs) <= 3 and all(lists == 0 for _i, _t, lists in costs)
    assert all(total == 1 for _i, total, _l in costs[-3:])  # recent rows: the slot probe only
    other = Catalog(open_location(dest), partitions=8)
    with counting(other.loc) as seen:
        assert other.get_row("a-below-every-run") is None  # still reads the large runs' footers
        assert seen.total == 1 + 5 + 2
        totals = []
        for image_id in oldest[5::step]:
            seen.reset()
            assert other.get_row(image_id).reason == "b0"
            totals.append(seen.total)
    assert sum(max(0, total - 3) for total in totals) <= 2  # the lookup that first needs a small run holds it


def test_only_an_object_store_holds_small_runs(catalog):
    """On S3 the small runs are held after one lookup; on a folder none is (a whole-run read
    costs more CPU there than the system call it saves), and each run costs its footer and one
    partition read, as before holding."""
    dest, batches, runs = catalog
    reader = Catalog(open_location(dest), partitions=8)
    with counting(reader.loc) as seen:
        assert reader.get_row(batches["b0"][len(batches["b0"]) // 2]).reason == "b0"
    held = [r for r in runs if reader.loc.path(r.key) in reader.runs.held]
    if dest.startswith("s3://"):
        assert held == runs[:2] and seen.total == 12
    else:
        assert held == [] and seen.total == 1 + 5 + 2 * len(runs)


def test_held_runs_keep_the_most_recently_used_within_their_budget():
    held = HeldRuns(budget=10)
    held.add("a", b"0123")
    held.add("b", b"4567")
    assert held.slice("a", 1, 2) == b"12"  # a is now the most recently used
    held.add("c", b"89ab")
    assert "b" not in held and held.slice("a", 0, 4) == b"0123" and held.slice("c", 2, 9) == b"ab"
    assert held.slice("b", 0, 1) is None
    held.add("d", b"x" * 20)  # larger than the budget alone: kept, the others dropped
    assert "d" in held and "a" not in held and "c" not in held
