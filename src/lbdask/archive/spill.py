"""External sort of catalog rows: `repair` and the v1 -> v2 conversion read every row of an
archive, in no useful order, and must hold memory independent of their number; a rerun sorts
a folder's listing entries the same way (anything picklable with an `id`).

Rows arrive in the order in which a later one of an id wins (batch / commit order). They are
gathered in a chunk of at most `CHUNK_ROWS` ids; a full chunk is sorted and spilled to a
private temporary file as pickled blocks of `BLOCK_ROWS` rows; reading merges the files,
newest first (`runs.merge_newest_first`), so each id comes back once, its last row, in
ascending order. More than `FANIN` files are first merged in contiguous groups (their order
is what "newest" means), so a read holds at most `FANIN` blocks. The files are local and read
once by this process: pickle, not run objects (no index, Bloom filter, gzip or fsync to pay
for on data that never reaches the store).
"""
from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator

from lbdask.archive.rows import CatalogRow
from lbdask.archive.runs import merge_newest_first

#: Ids gathered in memory before a sorted chunk is spilled (~1-2 KB each as Python objects).
CHUNK_ROWS = 50_000
#: Rows per pickled block of a spill file: what reading holds per file.
BLOCK_ROWS = 512
#: Spill files merged at once.
FANIN = 16
#: Called with the number of rows of each chunk as it is spilled (tests bound it).
on_spill: Callable[[int], None] | None = None


class SortedRows:
    """Rows sorted by id, each id once (the last added wins), spilled to files in `folder`;
    iterating reads them back ascending. Memory: one chunk while adding, none once sealed."""

    def __init__(self, folder: str, rows: Iterable[CatalogRow] = ()) -> None:
        self.folder = folder
        self.files: list[str] = []  # oldest first
        self._chunk: dict[str, CatalogRow] = {}
        self.add(rows)

    def add(self, rows: Iterable[CatalogRow]) -> None:
        """Add `rows` (each wins over every row of its id added before it)."""
        for row in rows:
            self._chunk[row.id] = row
            if len(self._chunk) >= CHUNK_ROWS:
                self.seal()

    def seal(self) -> SortedRows:
        """Spill the rows gathered so far, so that none stay in memory; returns self."""
        if self._chunk:
            if on_spill is not None:
                on_spill(len(self._chunk))
            chunk, self._chunk = self._chunk, {}
            self.files.append(spill_file(self.folder, (chunk[i] for i in sorted(chunk))))
        return self

    def _merge(self, files: list[str]) -> Iterator[CatalogRow]:
        return merge_newest_first([read_spill(p) for p in reversed(files)])

    def __iter__(self) -> Iterator[CatalogRow]:
        self.seal()
        while len(self.files) > FANIN:  # merge contiguous groups: a group's order is kept
            groups = [self.files[i:i + FANIN] for i in range(0, len(self.files), FANIN)]
            self.files = [spill_file(self.folder, self._merge(g)) for g in groups]
            for path in (p for g in groups for p in g):
                os.unlink(path)
        return self._merge(self.files)


def spill_file(folder: str, rows: Iterable[CatalogRow]) -> str:
    """A new spill file in `folder` of `rows` (ascending by id, as they come) in pickled
    blocks; its path. Nothing is left when `rows` raises (repair copies a run's scan this
    way: a run that cannot be read whole is not used at all)."""
    fd, path = tempfile.mkstemp(dir=folder, suffix=".rows")
    try:
        with open(fd, "wb") as f:
            block: list[CatalogRow] = []
            for row in rows:
                block.append(row)
                if len(block) >= BLOCK_ROWS:
                    pickle.dump(block, f, protocol=pickle.HIGHEST_PROTOCOL)
                    block = []
            if block:
                pickle.dump(block, f, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        os.unlink(path)
        raise
    return path


def read_spill(path: str) -> Iterator[CatalogRow]:
    """The rows of a spill file, one block in memory at a time."""
    with open(path, "rb") as f:
        while True:
            try:
                block = pickle.load(f)
            except EOFError:
                return
            yield from block
