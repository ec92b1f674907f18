"""Writing sorted runs (the format: runs.py and docs/archive-format.md, "Sorted runs").

`write_run` streams ascending rows (parsed, or `RawRow`s as a merge copies them) into one run
object: blocks of up to BLOCK_ROWS rows, each index partition (its block entries and the
Bloom filter of its ids) right after its PARTITION_BLOCKS blocks, then the footer. It holds
one block and one partition's entries, never the run; the object appears whole or not at
all (`objects.put_streamed`). runs.py reads what it writes.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lbdask.archive.bloom import BloomFilter, id_hashes
from lbdask.archive.objects import put_streamed
from lbdask.archive.rows import CatalogRow, dump_lines, row_line
from lbdask.archive.runs import RawRow, RunInfo
from lbdask.storage import Location

if TYPE_CHECKING:
    import numpy as np

#: At most this many rows per block, and a block closes once its rows' estimated JSON reaches
#: BLOCK_BYTES: a point lookup reads and parses one block.
BLOCK_ROWS = 128
BLOCK_BYTES = 64 * 1024
#: Blocks per index partition, so at most 64 x 128 = 8,192 rows: a partition is ~13 KB (its
#: Bloom filter 10 KB, its block entries ~3 KB), one small read, and the footer holds one
#: ~50-byte entry per 8,192 rows (~20 KB gzipped at 10M rows).
PARTITION_BLOCKS = 64


def _raw(row: CatalogRow | RawRow) -> RawRow:
    return row if isinstance(row, RawRow) else RawRow(row.id, row_line(row))


def _blocks(rows: Iterable[CatalogRow | RawRow]) -> Iterator[list[RawRow]]:
    """`rows` serialised and cut into blocks of at most BLOCK_ROWS rows, closed once their
    JSON reaches BLOCK_BYTES; ValueError unless the ids ascend strictly."""
    block: list[RawRow] = []
    size = 0
    last: str | None = None
    for row in map(_raw, rows):
        if last is not None and row.id <= last:
            raise ValueError(f"run rows must ascend by id, each id once: {row.id!r} follows {last!r}")
        last = row.id
        block.append(row)
        size += len(row.line) + 1
        if len(block) >= BLOCK_ROWS or size >= BLOCK_BYTES:
            yield block
            block, size = [], 0
    if block:
        yield block


def _gzip_json(data: Any) -> bytes:
    return gzip.compress(json.dumps(data, separators=(",", ":")).encode("utf-8"), mtime=0)


def write_run(loc: Location, key: str, rows: Iterable[CatalogRow | RawRow], level: int) -> RunInfo | None:
    """Write `rows` (ascending by id, unique: ValueError otherwise; parsed or as `scan(raw=True)`
    yields them: the same bytes either way) as one run object at `key`
    (relative to the archive root); None and no object when there are no rows. Streams: it
    holds one block and one partition's entries and id hashes (at most PARTITION_BLOCKS x
    BLOCK_ROWS ids), plus the footer's one entry per partition. The object appears
    atomically (`put_streamed`)."""
    try:
        return _write(loc, key, rows, level)
    except _NoRows:
        return None


class _NoRows(Exception):
    """Raised inside `put_streamed` so that an empty run leaves no object behind."""


class _Partition:
    """The block entries and id hashes of the partition being written."""

    def __init__(self) -> None:
        self.blocks: list[list[Any]] = []
        self.hashes: list[np.ndarray] = []

    def add(self, block: list[RawRow], offset: int, size: int) -> None:
        self.blocks.append([block[0].id, offset, size, len(block)])
        self.hashes.append(id_hashes([r.id for r in block]))

    def dump(self) -> bytes:
        """The partition's bytes: its block entries and the Bloom filter of its ids."""
        import numpy as np  # writing only: a lookup never imports numpy (tests/cli/test_startup.py)

        bloom = BloomFilter.for_ids(sum(b[3] for b in self.blocks))
        bloom.add_hashes(np.concatenate(self.hashes))
        return _gzip_json({"blocks": self.blocks, "bloom": bloom.to_json()})


def _write(loc: Location, key: str, rows: Iterable[CatalogRow | RawRow], level: int) -> RunInfo:
    partitions: list[list[Any]] = []
    part = _Partition()
    offset = count = 0
    max_id = ""
    with put_streamed(loc, loc.path(key)) as out:
        for block in _blocks(rows):
            blob = dump_lines(r.line for r in block)
            out.write(blob)
            part.add(block, offset, len(blob))
            offset += len(blob)
            count += len(block)
            max_id = block[-1].id
            if len(part.blocks) >= PARTITION_BLOCKS:
                offset += _close(out, part, partitions, offset)
                part = _Partition()
        if part.blocks:
            offset += _close(out, part, partitions, offset)
        if not partitions:
            raise _NoRows
        footer = _gzip_json({"partitions": partitions})
        out.write(footer)
    return RunInfo(key, level, count, offset + len(footer), offset, len(footer), partitions[0][0], max_id)


def _close(out: Any, part: _Partition, partitions: list[list[Any]], offset: int) -> int:
    """Write `part` at `offset`, add its footer entry; its size."""
    blob = part.dump()
    out.write(blob)
    partitions.append([part.blocks[0][0], offset, len(blob)])
    return len(blob)
