"""A run's footer read without one object per entry (`run_index.parse_footer`), the same as JSON
gives it, whatever the ids hold; and a dropped catalog handle freed without the cyclic garbage
collector (both kept a cold lookup's p99 at 10 M rows in full collections)."""
import gc
import gzip
import json
import weakref

import pytest

from lbdask.archive import run_index
from lbdask.archive.catalog import Catalog
from lbdask.archive.rows import CatalogRow
from lbdask.errors import IntegrityError
from lbdask.storage import open_location

TRICKY = ["a", 'a],["b', 'q"', "x\\", "é", "\u4e2d/1.png", 'z",1,2]']


def footer_blob(ids, sep=(",", ":")):
    entries = [[i, 100 * n, 10 + n] for n, i in enumerate(ids)]
    return gzip.compress(json.dumps({"partitions": entries}, separators=sep).encode())


@pytest.mark.parametrize("ids", [["d000/img0.png", "d001/img7.png", "d002/a b,c].png"], sorted(TRICKY)])
@pytest.mark.parametrize("sep", [(",", ":"), (", ", ": "), (",", ": ")])
def test_a_footer_reads_as_json_gives_it(ids, sep):
    footer = run_index.parse_footer("run", footer_blob(ids, sep))
    assert footer.first_ids == ids and len(footer) == len(ids)
    assert footer.partitions == [(100 * n, 10 + n) for n in range(len(ids))]
    assert footer.blocks_start(0) == 0 and footer.blocks_start(2) == 100 + 11


def test_the_fast_path_reads_what_run_writers_write():
    text = gzip.decompress(footer_blob(["d000/img0.png", "d001/img1.png"])).decode()
    assert run_index._split_footer(text) is not None  # the path a 10 M footer takes


def test_parsing_a_footer_of_a_10m_row_run_gives_the_garbage_collector_no_work():
    """~2,000 entries at 10 M rows; 20,000 here: as one list per entry (what JSON builds) they
    would start ~28 young collections."""
    blob = footer_blob([f"d{n:07d}/x.png" for n in range(20_000)])
    collections = []
    gc.collect()
    gc.callbacks.append(lambda phase, info: collections.append(info) if phase == "start" else None)
    try:
        footer = run_index.parse_footer("run", blob)
    finally:
        gc.callbacks.pop()
    assert len(footer) == 20_000 and footer.entry(19_999) == (1_999_900, 20_009)
    assert len(collections) < 5  # not 0: another thread may allocate meanwhile


def test_an_entry_is_read_by_its_first_three_fields():
    footer = run_index.parse_footer("run", gzip.compress(b'{"partitions":[["a",1,2,3],["b",3,4,5]]}'))
    assert footer.first_ids == ["a", "b"] and footer.partitions == [(1, 2), (3, 4)]


@pytest.mark.parametrize("text", ['{"partitions":[]}', '{"partitions":[["a",-1,5]]}', '{"partitions":[["a",1]]}',
                                  '{"partitions":[["a",1,x]]}', "not json",
                                  '{"partitions":[["1,2]]}'])
def test_a_footer_that_is_not_one_is_an_integrity_error(text):
    with pytest.raises(IntegrityError, match="catalog object run is unreadable"):
        run_index.parse_footer("run", gzip.compress(text.encode()))


def test_a_dropped_catalog_is_freed_without_the_cyclic_collector(tmp_path):
    cat = Catalog(open_location(str(tmp_path)), partitions=8)
    cat.commit("a", [CatalogRow(id="x", status="failed", reason="a")])
    assert cat.get_row("x").reason == "a"
    handle = weakref.ref(cat)
    gc.disable()
    try:
        del cat
        assert handle() is None
    finally:
        gc.enable()
