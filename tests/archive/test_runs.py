"""Sorted runs (`lbdask.archive.runs`, catalog v2): get/scan against a dict, the newest-first
merge, the Bloom filter, atomic streaming writes, damage, bounded reads and bounded memory."""
import base64
import dataclasses
import gzip
import json
import os
import threading
import tracemalloc
import uuid
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdask.archive import runs
from lbdask.archive.bloom import BloomFilter, id_hashes
from lbdask.archive.rows import CatalogRow
from lbdask.archive.runs import RunInfo, RunReader, merge_newest_first, write_run
from lbdask.errors import IntegrityError
from lbdask.storage import Location, open_location

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: ids with unicode, '/', ids that are prefixes of others ("a", "a/", "a/b") and very long ids
IDS = st.one_of(st.text(min_size=1, max_size=12), st.text(alphabet="a/é\u4e2d", min_size=1, max_size=5),
                st.text(alphabet="xy", min_size=300, max_size=1200))


def row(image_id, version=0):
    return CatalogRow(id=image_id, status="failed", reason=f"v{version}", index=version)


def rows_of(ids, version=0):
    return [row(i, version) for i in sorted(ids)]


@pytest.fixture
def loc(tmp_path):
    return open_location(str(tmp_path))


def new_key():
    return f"catalog/runs/1-{uuid.uuid4().hex[:8]}/r0.run"


class CountingFS:
    """The reader's view of a filesystem that counts range reads."""

    def __init__(self, fs):
        self.fs = fs
        self.reads = 0

    def cat_file(self, path, start=None, end=None):
        self.reads += 1
        return self.fs.cat_file(path, start=start, end=end)


def counting(loc):
    fs = CountingFS(loc.fs)
    return fs, Location(fs, loc.root, loc.url)


@FAST
@given(ids=st.sets(IDS, min_size=1, max_size=80), absent=st.lists(IDS, max_size=10),
       block_rows=st.sampled_from([1, 3, 128]), starts=st.lists(IDS, max_size=2))
def test_get_and_scan_match_a_dict(loc, ids, absent, block_rows, starts):
    want = {r.id: r for r in rows_of(ids)}
    key = new_key()
    with mock.patch.object(runs, "BLOCK_ROWS", block_rows):
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
@given(versions=st.lists(st.sets(st.text(alphabet="abc/", min_size=1, max_size=4), max_size=30), max_size=5))
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
            assert BloomFilter(bits, k).data.shape == (1,)
        else:
            with pytest.raises(ValueError, match="bits >= 1 and k >= 1"):
                BloomFilter(bits, k)
    with pytest.raises(ValueError, match="holds 2 bytes"):
        BloomFilter(16, 7, np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="holds 2 bytes"):
        BloomFilter(16, 7, np.zeros(2, dtype=np.uint16))
    with pytest.raises(ValueError):
        BloomFilter.from_json({"bits": 16, "k": 7, "data": "AA!A"})


def test_write_run_of_nothing_writes_nothing(loc):
    assert write_run(loc, "catalog/runs/x/r0.run", iter([]), level=0) is None
    assert not os.path.exists(loc.path("catalog/runs/x/r0.run"))


@pytest.mark.parametrize("ids", [["b", "a"], ["a", "a"], ["a", "c", "b"]], ids=["unsorted", "duplicate", "late"])
def test_write_run_rejects_unsorted_or_duplicate_ids_and_leaves_no_object(loc, ids):
    key = "catalog/runs/x/r0.run"
    with mock.patch.object(runs, "BLOCK_ROWS", 1), pytest.raises(ValueError, match="ascend"):
        write_run(loc, key, (row(i) for i in ids), level=0)
    assert os.listdir(loc.path("catalog/runs/x")) == []  # no object, no temporary file


def test_the_object_appears_only_when_it_is_complete(loc):
    key = new_key()
    path = loc.path(key)

    def rows():
        for i in range(300):
            assert not os.path.exists(path)
            yield row(f"img{i:03d}")

    with mock.patch.object(runs, "BLOCK_ROWS", 8):
        info = write_run(loc, key, rows(), level=0)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert info.rows == 300


def written(loc, n=40, block_rows=4):
    with mock.patch.object(runs, "BLOCK_ROWS", block_rows):
        return write_run(loc, new_key(), iter(rows_of(f"img{i:03d}" for i in range(n))), level=0)


def damage(loc, key, offset):
    with open(loc.path(key), "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def test_a_damaged_block_is_an_integrity_error_naming_the_object(loc):
    info = written(loc)
    damage(loc, info.key, 20)  # inside block 0
    reader = RunReader(loc)
    assert reader.get(info, "img010").id == "img010"  # other blocks still read
    with pytest.raises(IntegrityError, match=f"{info.key}.*block 0"):
        reader.get(info, "img001")
    with pytest.raises(IntegrityError, match=info.key):
        list(reader.scan(info))


@pytest.mark.parametrize("where", ["first byte", "last byte"])
def test_a_damaged_footer_is_an_integrity_error_naming_the_object(loc, where):
    info = written(loc)
    damage(loc, info.key, info.footer_offset if where == "first byte" else info.size - 1)
    with pytest.raises(IntegrityError, match=f"{info.key}.*footer"):
        RunReader(loc).get(info, "img001")


def with_footer(loc, info, edit):
    """`info`'s run with its footer JSON passed through `edit` (a footer that parses but lies)."""
    with open(loc.path(info.key), "rb") as f:
        blob = f.read()
    footer = json.loads(gzip.decompress(blob[info.footer_offset:]))
    new = gzip.compress(json.dumps(edit(footer)).encode())
    with open(loc.path(info.key), "wb") as f:
        f.write(blob[: info.footer_offset] + new)
    return dataclasses.replace(info, footer_size=len(new), size=info.footer_offset + len(new))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: {**f, "blocks": []}, "footer: ValueError"),
    (lambda f: {**f, "blocks": [[b[0], b[1], b[2], b[3] + 1] for b in f["blocks"]]}, "block 0 does not match"),
    (lambda f: {**f, "blocks": [["img000x", *f["blocks"][0][1:]], *f["blocks"][1:]]}, "block 0 does not match"),
    (lambda f: {**f, "bloom": {**f["bloom"], "bits": f["bloom"]["bits"] * 2}}, "footer: ValueError"),
], ids=["no blocks", "row count", "first id", "bloom size"])
def test_a_footer_that_does_not_match_the_object_is_an_integrity_error(loc, edit, message):
    info = with_footer(loc, written(loc), edit)
    with pytest.raises(IntegrityError, match=f"{info.key}.*{message}"):
        RunReader(loc).get(info, "img001")


def test_a_truncated_object_is_an_integrity_error_naming_it(loc):
    info = written(loc)
    os.truncate(loc.path(info.key), info.footer_offset + 10)
    with pytest.raises(IntegrityError, match=f"{info.key}.*truncated"):
        list(RunReader(loc).scan(info))


def test_a_missing_object_raises_file_not_found(loc):
    info = written(loc)
    os.remove(loc.path(info.key))
    with pytest.raises(FileNotFoundError):
        RunReader(loc).get(info, "img001")
    with pytest.raises(FileNotFoundError):
        list(RunReader(loc).scan(info))


def test_get_reads_the_footer_once_and_at_most_one_block_per_call(loc):
    info = written(loc, n=400, block_rows=8)  # 50 blocks
    fs, counted = counting(loc)
    reader = RunReader(counted, block_cache=64)
    assert reader.get(info, "img") is None and reader.get(info, "img400") is None
    assert fs.reads == 0  # outside the run's id range: not even the footer is read
    assert reader.get(info, "img000").index == 0 and fs.reads == 2  # footer + block
    for i in range(8, 400, 8):  # the first id of each further block
        before = fs.reads
        assert reader.get(info, f"img{i:03d}").id == f"img{i:03d}"
        assert fs.reads == before + 1
    before = fs.reads
    assert all(reader.get(info, f"img{i:03d}") is not None for i in range(400))  # all cached now
    assert fs.reads == before
    absent = [f"img{i:03d}x" for i in range(300)]  # inside the run's id range
    fresh = RunReader(counted, block_cache=64)
    fresh.footer(info)
    before = fs.reads
    assert all(fresh.get(info, i) is None for i in absent)
    assert fs.reads - before <= 15  # the Bloom filter spares the block read for most absent ids


def test_the_block_cache_holds_block_cache_blocks(loc):
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
    assert fs.reads == 2  # footer, then all 50 small blocks in one range read
    with mock.patch.object(runs, "SCAN_READ_BYTES", 1):
        assert len(list(RunReader(counted).scan(info))) == 400
    assert fs.reads == 2 + 51  # a block larger than the span is read alone


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
    with mock.patch.object(runs, "BLOCK_ROWS", 16), mock.patch.object(runs, "SCAN_READ_BYTES", 4096):
        small, n_small = peak_bytes(loc, 1_200)
        large, n_large = peak_bytes(loc, 4_800)
    assert (n_small, n_large) == (1_200, 4_800)
    # holding the rows would take ~1 KB per row (3.6 MB more); the footer takes a few bytes per row
    assert large < small + 3_600 * 40
    assert large < 4_800 * 200


def test_a_run_on_s3_reads_back(s3_bucket):
    loc = open_location(s3_bucket + "/arc")
    want = rows_of(f"d{i % 3}/é{i:03d}" for i in range(300))
    with mock.patch.object(runs, "BLOCK_ROWS", 16):
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
