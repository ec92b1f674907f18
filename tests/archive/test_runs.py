"""Sorted runs (`lbdask.archive.runs`, catalog v2): get/scan against a dict, the newest-first
merge, the Bloom filter, atomic streaming writes, bounded reads and bounded memory (damage:
test_runs_damage.py)."""
import base64
import json
import os
import threading
import tracemalloc
import uuid
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdask.archive import held_runs, run_writer, runs
from lbdask.archive.bloom import BloomFilter, id_hashes
from lbdask.archive.rows import CatalogRow
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RunInfo, RunReader, merge_newest_first
from lbdask.storage import Location, open_location

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: ids with unicode, '/', the empty id, ids that are prefixes of others ("a", "a/", "a/b") and very long ids
IDS = st.one_of(st.just(""), st.text(min_size=1, max_size=12), st.text(alphabet="a/é\u4e2d", min_size=1, max_size=5),
                st.text(alphabet="xy", min_size=300, max_size=1200))


def row(image_id, version=0):
    return CatalogRow(id=image_id, status="failed", reason=f"v{version}", index=version)


def rows_of(ids, version=0):
    return [row(i, version) for i in sorted(ids)]


@pytest.fixture
def loc(tmp_path):
    return open_location(str(tmp_path))


@pytest.fixture(autouse=True)
def partition_at_a_time(monkeypatch):
    """The reads counted here are those of a run too large to be held whole (test_held_runs.py)."""
    monkeypatch.setattr(held_runs, "WHOLE_RUN_BYTES", 0)


def new_key():
    return f"catalog/runs/1-{uuid.uuid4().hex[:8]}/r0.run"


class CountingFS:
    """The reader's view of a filesystem that counts range reads."""

    def __init__(self, fs):
        self.fs = fs
        self.reads = 0
        self.ranges = []

    def cat_file(self, path, start=None, end=None):
        self.reads += 1
        self.ranges.append((start, end))
        return self.fs.cat_file(path, start=start, end=end)


def counting(loc):
    fs = CountingFS(loc.fs)
    return fs, Location(fs, loc.root, loc.url)


@FAST
@given(ids=st.sets(IDS, min_size=1, max_size=80), absent=st.lists(IDS, max_size=10),
       block_rows=st.sampled_from([1, 3, 128]), partition_blocks=st.sampled_from([1, 2, 64]),
       starts=st.lists(IDS, max_size=2))
def test_get_and_scan_match_a_dict(loc, ids, absent, block_rows, partition_blocks, starts):
    want = {r.id: r for r in rows_of(ids)}
    key = new_key()
    with mock.patch.object(run_writer, "BLOCK_ROWS", block_rows), mock.patch.object(run_writer, "PARTITION_BLOCKS", partition_blocks):
        info = write_run(loc, key, iter(want.values()), level=2)
    assert (info.key, info.level, info.rows, info.min_id, info.max_id) == (key, 2, len(ids), min(ids), max(ids))
    assert info.size == os.path.getsize(loc.path(key)) == info.footer_offset + info.footer_size
    reader = RunReader(loc, block_cache=4)
    assert [r.to_json() for r in reader.scan(info)] == [r.to_json() for r in want.values()]
    for image_id, expected in want.items():
        assert reader.get(info, image_id).to_json() == expected.to_json()
    for image_id in [*absent, *(i + "\0" for i in ids), *(i[:-1] for i in ids)]:
        if image_id not in want:
            assert reader.get(info, image_id) is None
    for start in [*starts, next(iter(ids)), ""]:
        assert [r.id for r in reader.scan(info, start=start)] == [i for i in want if i >= start]


@FAST
@given(versions=st.lists(st.sets(st.text(alphabet="abc/", max_size=4), max_size=30), max_size=5))
def test_merge_newest_first_yields_each_id_once_from_the_newest_stream(versions):
    reference = {}
    for n, ids in reversed(list(enumerate(versions))):  # oldest first: newer versions overwrite
        reference.update({i: n for i in ids})
    merged = list(merge_newest_first([iter(rows_of(ids, n)) for n, ids in enumerate(versions)]))
    assert [(r.id, r.index) for r in merged] == sorted(reference.items())


def test_bloom_filter_has_no_false_negatives_and_few_false_positives():
    present = [f"d{i % 7}/img{i}.png" for i in range(20_000)]
    bloom = BloomFilter.for_ids(len(present))
    bloom.add_hashes(id_hashes(present))
    assert bloom.bits == 200_000 and bloom.k == 7
    again = BloomFilter.from_json(bloom.to_json())
    assert all(i in again for i in present)
    false_positives = sum(f"d{i % 7}/absent{i}.png" in again for i in range(20_000))
    assert false_positives / 20_000 < 0.03
    assert "d0/absent0.png" not in BloomFilter.for_ids(10)  # an empty filter holds nothing


def test_a_bloom_filter_holds_ceil_bits_over_8_bytes_and_is_checked_when_read_back():
    assert len(base64.b64decode(BloomFilter(16, 7).to_json()["data"])) == 2
    assert len(base64.b64decode(BloomFilter(17, 7).to_json()["data"])) == 3
    assert BloomFilter.for_ids(1).bits == 64 and BloomFilter.for_ids(7).bits == 70
    for bits, k in ((0, 7), (8, 0), (1, 1)):
        if (bits, k) == (1, 1):
            assert len(BloomFilter(bits, k).data) == 1
        else:
            with pytest.raises(ValueError, match="bits >= 1 and k >= 1"):
                BloomFilter(bits, k)
    with pytest.raises(ValueError, match="holds 2 bytes"):
        BloomFilter(16, 7, bytes(3))
    with pytest.raises(ValueError, match="holds 2 bytes"):
        BloomFilter(16, 7, bytes(1))
    with pytest.raises(ValueError):
        BloomFilter.from_json({"bits": 16, "k": 7, "data": "AA!A"})


def test_write_run_of_nothing_writes_nothing(loc):
    assert write_run(loc, "catalog/runs/x/r0.run", iter([]), level=0) is None
    assert not os.path.exists(loc.path("catalog/runs/x/r0.run"))


@pytest.mark.parametrize("ids", [["b", "a"], ["a", "a"], ["a", "c", "b"]], ids=["unsorted", "duplicate", "late"])
def test_write_run_rejects_unsorted_or_duplicate_ids_and_leaves_no_object(loc, ids):
    key = "catalog/runs/x/r0.run"
    with mock.patch.object(run_writer, "BLOCK_ROWS", 1), pytest.raises(ValueError, match="ascend"):
        write_run(loc, key, (row(i) for i in ids), level=0)
    assert os.listdir(loc.path("catalog/runs/x")) == []  # no object, no temporary file


def test_the_object_appears_only_when_it_is_complete(loc):
    key = new_key()
    path = loc.path(key)

    def rows():
        for i in range(300):
            assert not os.path.exists(path)
            yield row(f"img{i:03d}")

    with mock.patch.object(run_writer, "BLOCK_ROWS", 8):
        info = write_run(loc, key, rows(), level=0)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert info.rows == 300


def written(loc, n=40, block_rows=4, partition_blocks=64):
    with mock.patch.object(run_writer, "BLOCK_ROWS", block_rows), mock.patch.object(run_writer, "PARTITION_BLOCKS", partition_blocks):
        return write_run(loc, new_key(), iter(rows_of(f"img{i:03d}" for i in range(n))), level=0)


def blocks_of(reader, info):
    """Every block's (offset, size, n_rows), partition by partition."""
    return [b for p in range(len(reader.footer(info).partitions)) for b in reader.partition(info, p).blocks]


def test_get_reads_the_footer_once_each_partition_once_and_at_most_one_block_per_call(loc):
    info = written(loc, n=400, block_rows=8, partition_blocks=5)  # 50 blocks in 10 partitions of 40 rows
    fs, counted = counting(loc)
    reader = RunReader(counted, block_cache=64)
    assert reader.get(info, "img") is None and reader.get(info, "img400") is None
    assert fs.reads == 0  # outside the run's id range: not even the footer is read
    assert reader.get(info, "img000").index == 0 and fs.reads == 2  # footer + partition with its blocks
    for i in range(8, 400, 8):  # the first id of each further block
        before = fs.reads
        assert reader.get(info, f"img{i:03d}").id == f"img{i:03d}"
        assert fs.reads == before + 1  # the block, or a new partition with its blocks
    before = fs.reads
    assert all(reader.get(info, f"img{i:03d}") is not None for i in range(400))  # all cached now
    assert fs.reads == before
    absent = [f"img{i:03d}x" for i in range(300)]  # inside the run's id range
    fresh = RunReader(counted, block_cache=64)
    for p in range(10):
        fresh.partition(info, p)
    before = fs.reads
    assert all(fresh.get(info, i) is None for i in absent)
    assert fs.reads - before <= 15  # the Bloom filter spares the block read for most absent ids
    with mock.patch.object(runs, "SPAN_BYTES", 100):  # blocks too large to come with their partition
        before = fs.reads
        assert RunReader(counted).get(info, "img000").index == 0 and fs.reads == before + 3  # footer, partition, block


def cold_get(loc, n, image_id):
    """(footer bytes, [bytes of each read]) of one get of `image_id` on a fresh handle, in a run
    of `n` rows cut into partitions of 4 blocks of 8 rows."""
    with mock.patch.object(run_writer, "BLOCK_ROWS", 8), mock.patch.object(run_writer, "PARTITION_BLOCKS", 4):
        info = write_run(loc, new_key(), iter(rows_of(f"img{i:05d}" for i in range(n))), level=0)
    fs, counted = counting(loc)
    assert RunReader(counted).get(info, image_id).id == image_id
    return info.footer_size, [end - start for start, end in fs.ranges]


def test_a_cold_get_reads_the_footer_one_partition_and_one_block_whatever_the_run_size(loc):
    small_footer, small = cold_get(loc, 1_000, "img00500")
    large_footer, large = cold_get(loc, 16_000, "img00500")
    assert len(small) == len(large) == 2  # the footer, then the partition with its blocks
    assert large[1:] == small[1:]  # the same partition and blocks, whatever N
    # the footer holds one ~20-byte entry per partition (32 rows) and nothing per row:
    # a single-level index (block entries + 10 Bloom bits per row) would be > 1.25 bytes per row
    assert large_footer - small_footer < (16_000 - 1_000) / 32 * 24
    assert large_footer < 16_000 * 0.75 and large[1] < 32 * 60 + 300


def test_scan_leaves_the_partition_and_block_caches_alone(loc):
    info = written(loc, n=400, block_rows=8, partition_blocks=5)
    fs, counted = counting(loc)
    reader = RunReader(counted)
    assert len(list(reader.scan(info))) == 400
    before = fs.reads
    assert reader.get(info, "img200").id == "img200"
    assert fs.reads == before + 1  # the partition with its blocks: only the footer is cached


def test_the_block_cache_holds_block_cache_blocks(loc):
    assert RunReader(loc).block_cache == 256 and RunReader(loc).partition_cache == 2048
    info = written(loc, n=16, block_rows=8)  # blocks: img000.., img008..
    fs, counted = counting(loc)
    for size, reads in ((1, 6), (2, 0)):
        reader = RunReader(counted, block_cache=size)
        reader.get(info, "img000"), reader.get(info, "img008")
        before = fs.reads
        for _ in range(3):
            reader.get(info, "img001"), reader.get(info, "img009")
        assert fs.reads - before == reads


def test_scan_reads_many_blocks_per_request(loc):
    info = written(loc, n=400, block_rows=8)
    fs, counted = counting(loc)
    assert len(list(RunReader(counted).scan(info))) == 400
    assert fs.reads == 3  # footer, partition, then all 50 small blocks in one range read
    with mock.patch.object(runs, "SCAN_READ_BYTES", 1):
        assert len(list(RunReader(counted).scan(info))) == 400
    assert fs.reads == 3 + 52  # a block larger than the span is read alone


@pytest.mark.parametrize("limit", [1, 2_000, 5_000, 1 << 20, "two blocks exactly"])
def test_scan_reads_whole_blocks_in_spans_as_long_as_the_limit_allows(loc, limit):
    info = written(loc, n=400, block_rows=8)
    fs, counted = counting(loc)
    reader = RunReader(counted)
    blocks = reader.partition(info, 0).blocks
    end_of_blocks = reader.footer(info).partitions[0][0]
    if limit == "two blocks exactly":
        limit = blocks[0][1] + blocks[1][1]
    fs.ranges.clear()
    with mock.patch.object(runs, "SCAN_READ_BYTES", limit):
        assert len(list(reader.scan(info))) == 400
    starts = {offset: size for offset, size, _ in blocks}
    assert [start for start, _ in fs.ranges] == sorted(start for start, _ in fs.ranges)
    assert fs.ranges[0][0] == 0 and fs.ranges[-1][1] == end_of_blocks
    for (start, end), (following, _) in zip(fs.ranges, [*fs.ranges[1:], (end_of_blocks, None)]):
        assert start in starts and end == following  # whole blocks, none skipped
        assert end - start <= limit or end - start == starts[start]  # a larger block alone
        if following < end_of_blocks:
            assert end + starts[following] - start > limit  # the next block did not fit


def test_an_absent_id_that_passes_the_bloom_filter_is_none_after_one_block(loc):
    info = written(loc, n=40, block_rows=8)
    fs, counted = counting(loc)
    reader = RunReader(counted)
    reader.partition(info, 0)
    with mock.patch.object(BloomFilter, "__contains__", return_value=True):
        for absent in ("img007x", "img008x", "img039x", "img00"):  # last of a block, first, last row, before
            before = fs.reads
            assert reader.get(info, absent) is None
            assert fs.reads - before <= 1


def test_footers_are_kept_in_a_least_recently_used_cache(loc):
    a, b, c = (written(loc, n=8) for _ in range(3))
    fs, counted = counting(loc)
    with mock.patch.object(runs, "FOOTER_CACHE", 2):
        reader = RunReader(counted, block_cache=0)
        for info in (a, b, a, c):  # c evicts b, the least recently used
            reader.footer(info)
        before = fs.reads
        reader.footer(a), reader.footer(c)
        assert fs.reads == before
        reader.footer(b)
        assert fs.reads == before + 1


def test_blocks_are_kept_in_a_least_recently_used_cache(loc):
    info = written(loc, n=24, block_rows=8)  # blocks: img000.., img008.., img016..
    fs, counted = counting(loc)
    reader = RunReader(counted, block_cache=2)
    for image_id in ("img000", "img008", "img001", "img016"):  # img016 evicts the block of img008
        reader.get(info, image_id)
    before = fs.reads
    reader.get(info, "img002"), reader.get(info, "img017")
    assert fs.reads == before
    reader.get(info, "img009")
    assert fs.reads == before + 1


def test_partitions_are_kept_in_a_least_recently_used_cache(loc):
    info = written(loc, n=24, block_rows=8, partition_blocks=1)  # partitions: img000.., img008.., img016..
    fs, counted = counting(loc)
    reader = RunReader(counted, block_cache=0, partition_cache=2)
    for p in (0, 1, 0, 2):  # 2 evicts 1, the least recently used
        reader.partition(info, p)
    before = fs.reads
    reader.partition(info, 0), reader.partition(info, 2)
    assert fs.reads == before
    reader.partition(info, 1)
    assert fs.reads == before + 1


def test_large_rows_make_blocks_of_about_block_bytes(loc):
    sizes = [1_000, 30_000, 500, 12_000, 20_000, 7_000, 25_000, 3_000] * 4
    rows = [CatalogRow(id=f"img{i:03d}", status="kept", chunks=[("tEXt", b"x" * size)]) for i, size in enumerate(sizes)]
    info = write_run(loc, new_key(), iter(rows), level=0)
    lengths = [len(json.dumps(r.to_json(), separators=(",", ":"))) + 1 for r in rows]
    blocks = blocks_of(RunReader(loc), info)
    assert len(blocks) >= 6  # ~530 KB of JSON
    first = 0
    for _, _, count in blocks[:-1]:
        block = lengths[first: first + count]
        assert sum(block) >= run_writer.BLOCK_BYTES * 0.95  # full
        assert sum(block[:-1]) < run_writer.BLOCK_BYTES * 1.05  # closed by its last row
        first += count


def test_a_reader_is_safe_to_share_between_threads(loc):
    info = written(loc, n=200, block_rows=4)
    reader = RunReader(loc, block_cache=3)
    errors = []

    def work(offset):
        try:
            for i in range(offset, offset + 600):
                got = reader.get(info, f"img{i % 200:03d}")
                assert got is not None and got.id == f"img{i % 200:03d}"
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 37,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def peak_bytes(loc, n):
    """tracemalloc's peak while `n` rows are written as a run and scanned back."""
    gen = (CatalogRow(id=f"img/{i:07d}.png", status="failed", reason="x" * 40) for i in range(n))
    tracemalloc.start()
    try:
        info = write_run(loc, new_key(), gen, level=0)
        count = sum(1 for _ in RunReader(loc).scan(info))
        return tracemalloc.get_traced_memory()[1], count
    finally:
        tracemalloc.stop()


def test_writing_and_scanning_a_run_holds_a_block_not_the_rows(loc):
    """Small blocks and scan reads so that two small sizes tell "one block" from "all rows"
    (tracemalloc makes every row slow to build)."""
    with mock.patch.object(run_writer, "BLOCK_ROWS", 16), mock.patch.object(runs, "SCAN_READ_BYTES", 4096):
        small, n_small = peak_bytes(loc, 1_200)
        large, n_large = peak_bytes(loc, 4_800)
    assert (n_small, n_large) == (1_200, 4_800)
    # holding the rows would take ~1 KB per row (3.6 MB more); the footer takes a few bytes per row
    assert large < small + 3_600 * 40
    assert large < 4_800 * 200


def test_a_run_on_s3_reads_back(s3_bucket):
    loc = open_location(s3_bucket + "/arc")
    want = rows_of(f"d{i % 3}/é{i:03d}" for i in range(300))
    with mock.patch.object(run_writer, "BLOCK_ROWS", 16):
        info = write_run(loc, "catalog/runs/1-a/r0.run", iter(want), level=0)
    assert write_run(loc, "catalog/runs/1-a/r1.run", iter([]), level=0) is None
    loc.fs.invalidate_cache()
    assert loc.fs.ls(loc.path("catalog/runs/1-a"), detail=False) == [loc.path(info.key)]
    assert loc.fs.size(loc.path(info.key)) == info.size
    reader = RunReader(loc)
    assert [r.id for r in reader.scan(info)] == [r.id for r in want]
    assert reader.get(info, "d1/é100").to_json() == row("d1/é100").to_json()
    assert reader.get(info, "d1/é1000") is None


def test_run_info_round_trips_through_json():
    info = RunInfo("catalog/runs/3-ab/r0.run", 1, 10, 999, 900, 99, "a", "z/\u4e2d")
    assert RunInfo.from_json(info.to_json()) == info
