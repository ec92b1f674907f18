"""Sorted runs: the immutable index objects of catalog v2 (docs/archive-format.md, "Sorted runs").

A run holds rows in ascending id order, each id once, with a two-level index:
`[blocks of partition 0][partition 0][blocks of partition 1][partition 1]...[footer]`. A block
is `dump_rows` of up to `run_writer.BLOCK_ROWS` rows (fewer when their JSON is large); a partition
is gzip JSON `{"blocks": [[first_id, offset, size, n_rows], ...], "bloom": {...}}` of up to
`run_writer.PARTITION_BLOCKS` blocks; the footer is gzip JSON `{"partitions": [[first_id, offset, size], ...]}`. The manifest
records where the footer is (`RunInfo`), so a cold lookup reads the footer, then one partition
together with the blocks before it (the id's block among them): two reads whatever N, and each
handle caches footers and partitions (then a lookup reads one block). This module reads runs
(`RunReader`) and merges sorted streams (`merge_newest_first`); run_writer.py writes them.
"""
from __future__ import annotations

import bisect
import dataclasses
import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from lbdask.archive import held_runs
from lbdask.archive.lru import LRU
from lbdask.archive.rows import CatalogRow, line_id, load_lines, load_rows
from lbdask.archive.run_index import DAMAGE, Footer, Partition, mismatch, parse_footer, parse_partition, unreadable
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: `scan` reads consecutive blocks in range reads of about this many bytes (fewer requests).
SCAN_READ_BYTES = 1 << 20
#: Footers kept per RunReader (LRU): a manifest lists O(log N) runs, but a long-lived
#: handle sees runs come and go as compactions replace them.
FOOTER_CACHE = 32
#: A lookup whose index partition is not cached reads it together with the blocks before it
#: (its blocks: 64 of ~8 KB in the 10 M benchmark's runs, ~500 KB) in one request when they
#: span at most this many bytes, so the partition and the id's block cost one request, not
#: two: on S3 a round trip saved for ~0.5 MB more transferred (a few ms), until the handle
#: holds the partition. Rows with inline PNG chunks make larger spans: partition, then block.
SPAN_BYTES = 1 << 20
#: Index partitions kept per RunReader (LRU; ~20 KB each parsed, so at most ~40 MB): every
#: partition of a 16M-row catalog, so an open handle reads at most one block per lookup.
PARTITION_CACHE = 2048


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


class RawRow(NamedTuple):
    """A row as a run stores it, unparsed: its id and its JSON line (`rows.row_line`). A merge
    copies rows this way: parsing every row into a CatalogRow and serialising it again at
    every level was most of a compaction's CPU."""

    id: str
    line: str


class RunReader:
    """Reads runs for one Catalog handle; safe to share between threads. Footers (an LRU of
    FOOTER_CACHE), index partitions (an LRU of `partition_cache`) and parsed blocks (an LRU of
    `block_cache`) are cached: runs are immutable. A missing object raises FileNotFoundError
    (the caller retries with a newer manifest); bytes that are not what was written raise
    IntegrityError naming the object."""

    def __init__(self, loc: Location, block_cache: int = 256, partition_cache: int = PARTITION_CACHE) -> None:
        self.loc = loc
        self.block_cache = block_cache
        self.partition_cache = partition_cache
        self._footers: LRU[str, Footer] = LRU(FOOTER_CACHE)
        self._partitions: LRU[tuple[str, int], Partition] = LRU(partition_cache)
        self._blocks: LRU[tuple[str, int], list[RawRow]] = LRU(block_cache)
        self.held = held_runs.HeldRuns()  # small runs, read whole: their partitions and blocks cost no request

    def _read(self, path: str, start: int, size: int) -> bytes:
        blob = self.held.slice(path, start, size)
        if blob is None:
            blob = self.loc.fs.cat_file(path, start=start, end=start + size)
        if len(blob) != size:
            raise IntegrityError(f"catalog object {path} is unreadable (truncated: {len(blob)} of {size} bytes "
                                 f"at offset {start})")
        return blob

    def footer(self, run: RunInfo) -> Footer:
        """The run's parsed footer (where its index partitions are), read once per run."""
        path = self.loc.path(run.key)
        return self._footers.load(run.key, lambda: parse_footer(path, self._read(path, run.footer_offset,
                                                                                 run.footer_size)))

    def partition(self, run: RunInfo, p: int, keep: bool = True) -> Partition:
        """The run's index partition `p` (its blocks and Bloom filter), cached unless `keep` is false."""
        footer = self.footer(run)
        path = self.loc.path(run.key)
        return self._partitions.load((run.key, p), lambda: parse_partition(
            path, footer, p, self._read(path, *footer.entry(p))), keep)

    def _parse_block(self, run: RunInfo, p: int, part: Partition, i: int, blob: bytes,
                     raw: bool = False) -> list[CatalogRow] | list[RawRow]:
        """Block i of partition p: rows, or `RawRow`s (only each line's id parsed) when `raw`."""
        path = self.loc.path(run.key)
        try:
            rows: list[Any] = [RawRow(line_id(x), x) for x in load_lines(blob)] if raw else load_rows(blob)
        except DAMAGE as exc:
            raise unreadable(path, f"partition {p} block {i}", exc) from None
        if not rows or len(rows) != part.blocks[i][2] or rows[0].id != part.first_ids[i]:
            raise mismatch(path, f"partition {p} block {i}", "partition")
        return rows

    def _block(self, run: RunInfo, p: int, part: Partition, i: int) -> list[RawRow]:
        """Block i of partition p as unparsed lines (cached): a lookup parses only its own row,
        not the ~90 others of the block (that was most of a lookup's CPU)."""
        offset, size, _ = part.blocks[i]
        return self._blocks.load((run.key, offset), lambda: self._parse_block(
            run, p, part, i, self._read(self.loc.path(run.key), offset, size), raw=True))

    def index(self, run: RunInfo, image_id: str) -> tuple[int, Partition] | None:
        """The number and contents of the index partition that may hold `image_id` (footer and
        partition read once and cached); None when the id is outside the run's range. A run of at
        most `held_runs.WHOLE_RUN_BYTES` on an object store is read whole the first time and held
        (`holds`, `held_runs.py`); of any other, a partition not cached yet is read with its blocks (`_spanned`)."""
        if not run.min_id <= image_id <= run.max_id:
            return None
        path = self.loc.path(run.key)
        if self.holds(run) and run.key not in self._footers and path not in self.held:
            self.held.add(path, self._read(path, 0, run.size))
        footer = self.footer(run)
        p = bisect.bisect_right(footer.first_ids, image_id) - 1
        part = self._partitions.get((run.key, p))
        if part is None:  # a held run's partition and block are sliced from its bytes, not a span
            part = self.partition(run, p) if path in self.held else self._spanned(run, footer, p, image_id)
        return p, part

    def _spanned(self, run: RunInfo, footer: Footer, p: int, image_id: str) -> Partition:
        """Partition p read in one request with the blocks before it (they end where it starts)
        when they span at most SPAN_BYTES; the block that may hold `image_id` is parsed from the
        same bytes and cached, so `get` reads nothing more. Larger spans (rows with inline PNG
        chunks): the partition alone."""
        start = footer.blocks_start(p)
        offset, size = footer.entry(p)
        if not 0 <= offset - start <= SPAN_BYTES:
            return self.partition(run, p)
        path = self.loc.path(run.key)
        blob = self._read(path, start, offset + size - start)
        part = self._partitions.load((run.key, p), lambda: parse_partition(path, footer, p, blob[offset - start:]))
        if image_id in part.bloom:
            b = bisect.bisect_right(part.first_ids, image_id) - 1
            at, length, _ = part.blocks[b]
            if start <= at and at + length <= offset:  # else `get` reads it, and names a damaged entry
                self._blocks.load((run.key, at), lambda: self._parse_block(
                    run, p, part, b, blob[at - start: at - start + length], raw=True))
        return part

    def holds(self, run: RunInfo) -> bool:
        """Whether `run` is read whole and held: a small run on an object store, where a request
        costs a round trip. On a folder a read is a system call, and reading a whole run to save
        one would cost a fresh handle's lookup more CPU than it saves (~3 ms at 10 M rows)."""
        return self.loc.is_remote and not held_runs.too_large(run.size)

    def has_footer(self, run: RunInfo) -> bool:
        """Whether the run's footer is cached (`prefetch` reads the missing ones first)."""
        return run.key in self._footers

    def indexed(self, run: RunInfo, image_id: str) -> bool:
        """Whether `get` needs no read but the block: the footer and the partition are cached."""
        footer = self._footers.get(run.key)
        if footer is not None and self.loc.path(run.key) in self.held:
            return True
        return footer is not None and (run.key, bisect.bisect_right(footer.first_ids, image_id) - 1) in self._partitions

    def get(self, run: RunInfo, image_id: str) -> CatalogRow | None:
        """The run's row of `image_id`, or None: the id range first, then the footer, the id's
        partition (its Bloom filter) and at most one block, each read once and cached."""
        found = self.index(run, image_id)
        if found is None or image_id not in found[1].bloom:
            return None
        p, part = found
        b = bisect.bisect_right(part.first_ids, image_id) - 1
        rows = self._block(run, p, part, b)
        i = bisect.bisect_left(rows, image_id, key=lambda r: r.id)
        if i == len(rows) or rows[i].id != image_id:
            return None
        try:
            return CatalogRow.from_json(json.loads(rows[i].line))
        except DAMAGE as exc:
            raise unreadable(self.loc.path(run.key), f"partition {p} block {b}", exc) from None

    def scan(self, run: RunInfo, start: str | None = None, raw: bool = False) -> Iterator[Any]:
        """The run's rows in ascending id order, from the first id >= `start` (all when None);
        as `RawRow`s when `raw` (what a merge copies into a new run without parsing).
        Per partition, consecutive blocks are fetched in range reads of about SCAN_READ_BYTES
        and parsed one at a time; the partition and block caches are not filled (a scan
        would flush them)."""
        footer = self.footer(run)
        first_p = 0 if start is None else max(0, bisect.bisect_right(footer.first_ids, start) - 1)
        for p in range(first_p, len(footer)):
            part = self.partition(run, p, keep=False)
            first = 0 if start is None or p > first_p else max(0, bisect.bisect_right(part.first_ids, start) - 1)
            for b, rows in self._scan_blocks(run, p, part, first, raw):
                yield from (r for r in rows if r.id >= start) if start is not None and b == first else rows

    def _scan_blocks(self, run: RunInfo, p: int, part: Partition, first: int,
                     raw: bool) -> Iterator[tuple[int, list[Any]]]:
        """Partition `p`'s blocks from `first` on (index, rows), read in spans."""
        path = self.loc.path(run.key)
        for i, j in _read_spans(part.blocks, first):
            base = part.blocks[i][0]
            blob = self._read(path, base, part.blocks[j - 1][0] + part.blocks[j - 1][1] - base)
            for b in range(i, j):
                offset, size, _ = part.blocks[b]
                yield b, self._parse_block(run, p, part, b, blob[offset - base: offset - base + size], raw)


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


R = TypeVar("R", CatalogRow, RawRow)


def merge_newest_first(streams: Sequence[Iterator[R]]) -> Iterator[R]:
    """K-way merge of streams ascending by id (rows or `RawRow`s), the newest stream first:
    each id once, from the newest stream that holds it, in ascending order."""
    heap: list[tuple[str, int, R]] = []
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
