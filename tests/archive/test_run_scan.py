"""`RunReader.scan(run, start)` on a run of many partitions and blocks: every start gives the
rows from it on, and reads only from the partition and block that hold it (mutation testing
found the start arithmetic unchecked beyond one partition)."""
import pytest

from lbdask.archive import run_writer
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RunReader
from lbdask.errors import IntegrityError
from lbdask.storage import open_location
from tests.archive.test_runs import counting, rows_of

IDS = [f"id{n:03d}" for n in range(0, 200, 2)]  # 100 rows: 25 blocks of 4 in 9 partitions of 3 blocks


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setattr(run_writer, "BLOCK_ROWS", 4)
    monkeypatch.setattr(run_writer, "PARTITION_BLOCKS", 3)
    loc = open_location(str(tmp_path))
    return loc, write_run(loc, "catalog/runs/1-a.run", iter(rows_of(IDS)), level=1)


@pytest.mark.parametrize("start", ["", "id000", "id001", "id023", "id024", "id025", "id047", "id050", "id197", "id198", "z"])
def test_scan_from_a_start_yields_the_rows_from_it_and_reads_from_its_block_on(run, start):
    loc, info = run
    footer = RunReader(loc).footer(info)
    p = max(0, sum(1 for first in footer.first_ids if first <= start) - 1)
    part = RunReader(loc).partition(info, p)
    b = max(0, sum(1 for first in part.first_ids if first <= start) - 1)
    fs, counted = counting(loc)
    assert [r.id for r in RunReader(counted).scan(info, start)] == [i for i in IDS if i >= start]
    reads = [r for r in fs.ranges if r != (info.footer_offset, info.footer_offset + info.footer_size)]
    partitions = [footer.partitions.index((s, e - s)) for s, e in reads if (s, e - s) in footer.partitions]
    assert partitions == list(range(p, len(footer.partitions)))  # none before the start's partition
    blocks = [s for s, e in reads if (s, e - s) not in footer.partitions]
    assert blocks[0] == part.blocks[b][0]  # the first block read holds the start


def test_a_damaged_block_is_named_by_its_partition_when_scanned(run):
    loc, info = run
    reader = RunReader(loc)
    part = reader.partition(info, 2)
    offset, size, _ = part.blocks[1]
    path = loc.path(info.key)
    blob = bytearray(loc.fs.cat_file(path))
    blob[offset:offset + size] = b"x" * size
    loc.fs.pipe_file(path, bytes(blob))
    with pytest.raises(IntegrityError, match="partition 2 block 1"):
        list(RunReader(loc).scan(info))
