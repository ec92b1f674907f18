"""Sorted runs: the immutable index objects of catalog v2 (docs/archive-format.md, "Sorted runs").

A run holds rows in ascending id order, each id once: `[block 0][block 1]...[footer]`. Each
block is `dump_rows` of up to BLOCK_ROWS rows (fewer when they are large); the footer is gzip
JSON `{"blocks": [[first_id, offset, size, n_rows], ...], "bloom": {...}}`. The manifest records
where the footer is (`RunInfo`), so a lookup reads the footer once per run and then, when the
Bloom filter does not rule the id out, one block: a bounded number of small reads whatever N.
"""
from __future__ import annotations

import bisect
import dataclasses
import gzip
import heapq
import json
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from lbdask.archive.bloom import BloomFilter, id_hashes
from lbdask.archive.objects import put_streamed
from lbdask.archive.rows import CatalogRow, dump_rows, load_rows
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: At most this many rows per block, and a block closes once its rows' estimated JSON reaches
#: BLOCK_BYTES: a point lookup reads and parses one block.
BLOCK_ROWS = 128
BLOCK_BYTES = 64 * 1024
#: `scan` reads consecutive blocks in range reads of about this many bytes (fewer requests).
SCAN_READ_BYTES = 1 << 20
#: Footers kept per RunReader (LRU): a manifest lists O(log N) runs, but a long-lived
#: handle sees runs come and go as compactions replace them.
FOOTER_CACHE = 32
_HASHES_PER_READ = 1 << 10  # id hashes (16 bytes each) read back per step when the Bloom filter is built


@dataclass(frozen=True)
class RunInfo:
    """What a manifest records about one run: enough to read its footer in one range read."""

    key: str  # relative to the archive root
    level: int
    rows: int
    size: int  # bytes of the object
    footer_offset: int
    footer_size: int
    min_id: str
    max_id: str

    def to_json(self) -> dict[str, Any]:
        """The manifest's entry for the run."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        """Inverse of `to_json` (KeyError when a field is missing)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def _size_hint(row: CatalogRow) -> int:
    """About the length of the row's JSON line without serialising it: the fixed fields,
    the id, and the base64 of the PNG chunks that rows written before issue 25 carry."""
    return 700 + len(row.id) + sum(4 * len(data) // 3 + len(kind) + 8 for kind, data in row.chunks)


def _blocks(rows: Iterable[CatalogRow]) -> Iterator[list[CatalogRow]]:
    """`rows` cut into blocks; ValueError unless the ids ascend strictly."""
    block: list[CatalogRow] = []
    size = 0
    last: str | None = None
    for row in rows:
        if last is not None and row.id <= last:
            raise ValueError(f"run rows must ascend by id, each id once: {row.id!r} follows {last!r}")
        last = row.id
        block.append(row)
        size += _size_hint(row)
        if len(block) >= BLOCK_ROWS or size >= BLOCK_BYTES:
            yield block
            block, size = [], 0
    if block:
        yield block


def write_run(loc: Location, key: str, rows: Iterable[CatalogRow], level: int) -> RunInfo | None:
    """Write `rows` (ascending by id, unique: ValueError otherwise) as one run object at `key`
    (relative to the archive root); None and no object when there are no rows. Streams: it
    holds one block, and at the end the Bloom filter (the ids' hashes wait in a temporary
    file until the row count sizes it). The object appears atomically (`put_streamed`)."""
    try:
        return _write(loc, key, rows, level)
    except _NoRows:
        return None


class _NoRows(Exception):
    """Raised inside `put_streamed` so that an empty run leaves no object behind."""


def _write(loc: Location, key: str, rows: Iterable[CatalogRow], level: int) -> RunInfo:
    index: list[list[Any]] = []
    offset = 0
    with tempfile.TemporaryFile() as hashes, put_streamed(loc, loc.path(key)) as out:
        for block in _blocks(rows):
            blob = dump_rows(block)
            out.write(blob)
            hashes.write(id_hashes([r.id for r in block]).tobytes())
            index.append([block[0].id, offset, len(blob), len(block)])
            offset += len(blob)
            max_id = block[-1].id
        if not index:
            raise _NoRows
        count = sum(entry[3] for entry in index)
        footer = gzip.compress(json.dumps({"blocks": index, "bloom": _bloom(hashes, count).to_json()},
                                          separators=(",", ":")).encode("utf-8"), mtime=0)
        out.write(footer)
    return RunInfo(key, level, count, offset + len(footer), offset, len(footer), index[0][0], max_id)


def _bloom(hashes: BinaryIO, count: int) -> BloomFilter:
    """The filter of `count` ids whose `id_hashes` were written to `hashes`, read back in steps."""
    bloom = BloomFilter.for_ids(count)
    hashes.seek(0)
    while chunk := hashes.read(16 * _HASHES_PER_READ):
        bloom.add_hashes(np.frombuffer(chunk, dtype=np.uint64).reshape(-1, 2))
    return bloom


@dataclass(frozen=True)
class Footer:
    """A run's parsed footer: the first id, offset, size and row count of each block, and the
    Bloom filter of its ids."""

    first_ids: list[str]
    blocks: list[tuple[int, int, int]]  # offset, size, n_rows
    bloom: BloomFilter


#: What parsing bytes that are not what was written raises (gzip, zlib, JSON, shapes).
_DAMAGE = (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError)


def _unreadable(path: str, what: str, exc: BaseException) -> IntegrityError:
    return IntegrityError(f"catalog object {path} is unreadable ({what}: {type(exc).__name__})")


def _parse_footer(path: str, blob: bytes) -> Footer:
    try:
        data = json.loads(gzip.decompress(blob))
        blocks = [(str(first), int(off), int(size), int(n)) for first, off, size, n in data["blocks"]]
        if not blocks:
            raise ValueError("no blocks")
        bloom = BloomFilter.from_json(data["bloom"])
    except _DAMAGE as exc:
        raise _unreadable(path, "footer", exc) from None
    return Footer([b[0] for b in blocks], [b[1:] for b in blocks], bloom)


class RunReader:
    """Reads runs for one Catalog handle; safe to share between threads. Footers are cached
    (runs are immutable), parsed blocks in an LRU of `block_cache` blocks. A missing object
    raises FileNotFoundError (the caller retries with a newer manifest); bytes that are not
    what was written raise IntegrityError naming the object."""

    def __init__(self, loc: Location, block_cache: int = 256) -> None:
        self.loc = loc
        self.block_cache = block_cache
        self._footers: OrderedDict[str, Footer] = OrderedDict()
        self._blocks: OrderedDict[tuple[str, int], list[CatalogRow]] = OrderedDict()
        self._lock = threading.Lock()

    def _read(self, path: str, start: int, size: int) -> bytes:
        blob = self.loc.fs.cat_file(path, start=start, end=start + size)
        if len(blob) != size:
            raise IntegrityError(f"catalog object {path} is unreadable (truncated: {len(blob)} of {size} bytes "
                                 f"at offset {start})")
        return blob

    def footer(self, run: RunInfo) -> Footer:
        """The run's parsed footer (block index and Bloom filter), read once per run."""
        with self._lock:
            footer = self._footers.get(run.key)
            if footer is not None:
                self._footers.move_to_end(run.key)
                return footer
        path = self.loc.path(run.key)
        footer = _parse_footer(path, self._read(path, run.footer_offset, run.footer_size))
        with self._lock:
            self._footers[run.key] = footer
            while len(self._footers) > FOOTER_CACHE:
                self._footers.popitem(last=False)
        return footer

    def _parse_block(self, run: RunInfo, footer: Footer, i: int, blob: bytes) -> list[CatalogRow]:
        path = self.loc.path(run.key)
        try:
            rows = load_rows(blob)
        except _DAMAGE as exc:
            raise _unreadable(path, f"block {i}", exc) from None
        if not rows or len(rows) != footer.blocks[i][2] or rows[0].id != footer.first_ids[i]:
            raise IntegrityError(f"catalog object {path} is unreadable (block {i} does not match its footer)")
        return rows

    def _block(self, run: RunInfo, footer: Footer, i: int) -> list[CatalogRow]:
        with self._lock:
            rows = self._blocks.get((run.key, i))
            if rows is not None:
                self._blocks.move_to_end((run.key, i))
                return rows
        offset, size, _ = footer.blocks[i]
        rows = self._parse_block(run, footer, i, self._read(self.loc.path(run.key), offset, size))
        with self._lock:
            self._blocks[(run.key, i)] = rows
            while len(self._blocks) > self.block_cache:
                self._blocks.popitem(last=False)
        return rows

    def get(self, run: RunInfo, image_id: str) -> CatalogRow | None:
        """The run's row of `image_id`, or None: the id range and the Bloom filter first
        (in memory), then at most one block read."""
        if not run.min_id <= image_id <= run.max_id:
            return None
        footer = self.footer(run)
        if image_id not in footer.bloom:
            return None
        rows = self._block(run, footer, bisect.bisect_right(footer.first_ids, image_id) - 1)
        i = bisect.bisect_left(rows, image_id, key=lambda r: r.id)
        return rows[i] if i < len(rows) and rows[i].id == image_id else None

    def scan(self, run: RunInfo, start: str | None = None) -> Iterator[CatalogRow]:
        """The run's rows in ascending id order, from the first id >= `start` (all when None).
        Consecutive blocks are fetched in range reads of about SCAN_READ_BYTES and parsed one
        at a time; the block cache is neither used nor filled (a scan would flush it)."""
        footer = self.footer(run)
        path = self.loc.path(run.key)
        first = 0 if start is None else max(0, bisect.bisect_right(footer.first_ids, start) - 1)
        for i, j in _read_spans(footer.blocks, first):
            base = footer.blocks[i][0]
            end = footer.blocks[j - 1][0] + footer.blocks[j - 1][1]
            blob = self._read(path, base, end - base)
            for b in range(i, j):
                offset, size, _ = footer.blocks[b]
                rows = self._parse_block(run, footer, b, blob[offset - base: offset - base + size])
                yield from (r for r in rows if r.id >= start) if start is not None and b == first else rows


def _read_spans(blocks: list[tuple[int, int, int]], first: int) -> Iterator[tuple[int, int]]:
    """Blocks first.. grouped into consecutive ranges [i, j) of at most SCAN_READ_BYTES
    (a larger block alone)."""
    i = first
    while i < len(blocks):
        j = i + 1
        while j < len(blocks) and blocks[j][0] + blocks[j][1] - blocks[i][0] <= SCAN_READ_BYTES:
            j += 1
        yield i, j
        i = j


def merge_newest_first(streams: Sequence[Iterator[CatalogRow]]) -> Iterator[CatalogRow]:
    """K-way merge of streams ascending by id, the newest stream first: each id once, from
    the newest stream that holds it, in ascending order."""
    heap: list[tuple[str, int, CatalogRow]] = []
    iters = [iter(s) for s in streams]
    for n, it in enumerate(iters):
        row = next(it, None)
        if row is not None:
            heap.append((row.id, n, row))
    heapq.heapify(heap)
    last: str | None = None
    while heap:
        image_id, n, row = heap[0]
        if image_id != last:
            yield row
            last = image_id
        nxt = next(iters[n], None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt.id, n, nxt))
