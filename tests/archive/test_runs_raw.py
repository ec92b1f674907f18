"""Merging runs by their rows' JSON lines (`RunReader.scan(raw=True)`, `runs.RawRow`): the merged
run is byte for byte the run the parsed path (rows parsed, then serialised again) writes."""
import uuid
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdask.archive import run_writer
from lbdask.archive.rows import CatalogRow, ChunksRef, OriginalRef, line_id, row_line
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RawRow, RunReader, merge_newest_first
from lbdask.storage import open_location

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: ids JSON escapes (quotes, backslashes, control characters, non-ASCII, surrogates' neighbours)
IDS = st.text(alphabet='ab/"\\\n\té\u4e2d\U0001f600', max_size=6)


def full_row(image_id: str, version: int) -> CatalogRow:
    """A row using every kind of field: references, inline chunks, floats, lists, a dict."""
    return CatalogRow(
        id=image_id, status="kept", reason="min-side", source_size=1234 + version, source_sha256="f" * 64,
        width=17, height=33, mode="RGBA", psnr=41.123456789 + version, lo=[-1.5, 0.25], hi=[2.0, 3.75],
        chunks=[("tEXt", bytes(range(version % 7, 40)))],
        chunks_ref=ChunksRef("meta/b.bin", 10, 99, "a" * 64, ("iTXt", "zTXt")) if version % 2 else None,
        original=OriginalRef("originals/b.bin", version, 77), batch_id=f"b{version}", kept_format="png",
        reencoded={"from": "x", "psnr_before": 30.5} if version % 3 == 0 else None)


@pytest.fixture
def loc(tmp_path):
    return open_location(str(tmp_path))


def run_bytes(loc, info) -> bytes:
    return loc.fs.cat_file(loc.path(info.key))


@FAST
@given(versions=st.lists(st.sets(IDS, max_size=25), min_size=1, max_size=4), block_rows=st.sampled_from([1, 3, 128]))
def test_a_raw_merge_writes_the_same_bytes_as_the_parsed_merge(loc, versions, block_rows):
    with mock.patch.object(run_writer, "BLOCK_ROWS", block_rows), mock.patch.object(run_writer, "PARTITION_BLOCKS", 2):
        infos = [write_run(loc, f"catalog/runs/{uuid.uuid4().hex}.run", iter([full_row(i, n) for i in sorted(ids)]), 0)
                 for n, ids in enumerate(versions)]
        infos = [i for i in infos if i is not None]
        reader = RunReader(loc)
        parsed = write_run(loc, "catalog/runs/parsed.run", merge_newest_first([reader.scan(i) for i in infos]), 1)
        raw = write_run(loc, "catalog/runs/raw.run", merge_newest_first([reader.scan(i, raw=True) for i in infos]), 1)
    if parsed is None:
        assert raw is None and not infos
        return
    assert raw == parsed.__class__(**{**parsed.to_json(), "key": "catalog/runs/raw.run"})
    assert run_bytes(loc, raw) == run_bytes(loc, parsed)
    assert [r.to_json() for r in RunReader(loc).scan(raw)] == [r.to_json() for r in RunReader(loc).scan(parsed)]


def test_a_raw_scan_yields_the_stored_lines_and_their_ids(loc):
    rows = [full_row(f'd/"{i}"\\é.png', i) for i in range(10)]
    info = write_run(loc, "catalog/runs/r.run", iter(rows), 0)
    assert list(RunReader(loc).scan(info, raw=True)) == [RawRow(r.id, row_line(r)) for r in rows]
    assert next(RunReader(loc).scan(info, start=rows[4].id, raw=True)).id == rows[4].id


@pytest.mark.parametrize("line, image_id", [
    ('{"id":"a\\"b\\\\c\\u00e9","status":"kept"}', 'a"b\\cé'),
    ('{"status":"kept","id":"later"}', "later"),  # a writer that put the id elsewhere: parsed whole
    ('{"id":"x"}', "x"),
])
def test_line_id_reads_the_id_of_any_row_line(line, image_id):
    assert line_id(line) == image_id
