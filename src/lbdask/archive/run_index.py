"""The two index levels of a sorted run, parsed (docs/archive-format.md, "Sorted runs").

At 10 M rows a run's footer lists ~2,000 index partitions, which every fresh handle parses:
it is kept as a list of first ids and one array of offsets and sizes, cheap to build and to
keep (see `Footer`).
"""
from __future__ import annotations

import gzip
import json
import zlib
from array import array
from dataclasses import dataclass

from lbdask.archive.bloom import BloomFilter
from lbdask.errors import IntegrityError

#: What parsing bytes that are not what was written raises (gzip, zlib, JSON, shapes).
DAMAGE = (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, IndexError)


def unreadable(path: str, what: str, exc: BaseException) -> IntegrityError:
    return IntegrityError(f"catalog object {path} is unreadable ({what}: {type(exc).__name__})")


def mismatch(path: str, what: str, index: str) -> IntegrityError:
    return IntegrityError(f"catalog object {path} is unreadable ({what} does not match its {index})")


class Footer:
    """A run's footer: the first id, offset and size of each index partition, held as a list of
    strings and an array of integers (`parse_footer`)."""

    def __init__(self, first_ids: list[str], spans: array[int]) -> None:
        if not first_ids or len(spans) != 2 * len(first_ids) or min(spans) < 0:
            raise ValueError("no partitions" if not first_ids else "entries that are not an offset and a size")
        self.first_ids = first_ids
        self._spans = spans  # offset, size of each partition in turn

    def __len__(self) -> int:
        return len(self.first_ids)

    def entry(self, p: int) -> tuple[int, int]:
        """Offset and size of partition p."""
        return self._spans[2 * p], self._spans[2 * p + 1]

    def blocks_start(self, p: int) -> int:
        """Where partition p's blocks begin: right after partition p-1 (the object's start for 0)."""
        return 0 if p == 0 else self._spans[2 * p - 2] + self._spans[2 * p - 1]

    @property
    def partitions(self) -> list[tuple[int, int]]:
        """Offset and size of every partition (scans and tests; a lookup uses `entry`)."""
        return [self.entry(p) for p in range(len(self))]


#: The footer's text as `run_writer.write_run` writes it: {"partitions":[["<id>",<offset>,<size>],...]}.
_HEAD, _SEP, _TAIL = '{"partitions":[["', '],["', ']]}'


def _split_footer(text: str) -> Footer | None:
    """The footer's entries cut out of its text without building one list per entry: at 10 M rows
    ~2,000 of them, which the garbage collector then tracked (a full collection every ~70 fresh
    handles, tens of ms each). `],["` cannot occur inside a JSON string (its quote would be
    escaped), nor `",` after an id's closing quote but before the numbers. None when the text
    is not in that form (another writer's spacing, an escaped id): then JSON parses it."""
    if not (text.startswith(_HEAD) and text.endswith(_TAIL)) or "\\" in text:
        return None
    ids, numbers = [], []
    for piece in text[len(_HEAD):-len(_TAIL)].split(_SEP):
        first, quote, pair = piece.rpartition('",')
        if not quote or not pair.replace(",", "", 1).isdigit():
            return None
        ids.append(first)
        numbers.append(pair)
    return Footer(ids, array("q", map(int, ",".join(numbers).split(","))))


@dataclass(frozen=True)
class Partition:
    """A parsed index partition: the first id, offset, size and row count of each of its
    blocks, and the Bloom filter of their ids."""

    first_ids: list[str]
    blocks: list[tuple[int, int, int]]  # offset, size, n_rows
    bloom: BloomFilter


def parse_footer(path: str, blob: bytes) -> Footer:
    try:
        text = gzip.decompress(blob).decode("utf-8")
        footer = _split_footer(text)
        if footer is None:
            entries = json.loads(text)["partitions"]
            footer = Footer([str(e[0]) for e in entries], array("q", (int(x) for e in entries for x in e[1:3])))
    except DAMAGE as exc:
        raise unreadable(path, "footer", exc) from None
    return footer


def parse_partition(path: str, footer: Footer, p: int, blob: bytes) -> Partition:
    try:
        data = json.loads(gzip.decompress(blob))
        blocks = [(str(first), int(off), int(size), int(n)) for first, off, size, n in data["blocks"]]
        if not blocks:
            raise ValueError("no blocks")
        bloom = BloomFilter.from_json(data["bloom"])
    except DAMAGE as exc:
        raise unreadable(path, f"partition {p}", exc) from None
    if blocks[0][0] != footer.first_ids[p]:
        raise mismatch(path, f"partition {p}", "footer")
    return Partition([b[0] for b in blocks], [b[1:] for b in blocks], bloom)
