"""The catalog: image id -> CatalogRow, as an LSM of batch objects, a commit log and an index.

Writers commit one gzip JSON-lines object per batch (`catalog/batches/<batch>.jsonl.gz`,
one PUT or rename: visible all at once or not at all), then announce it in the next free
slot of the commit log (`commit_log.py`). `compaction.compact` folds announced and listed
batches into the index and commits a new manifest generation by exclusive create
(compare-and-swap); the folded batch keeps a copy of its rows under `catalog/folded/`, so a
lost manifest or index object can be rebuilt (`repair.py`). A lookup never LISTs: it finds
the manifest from the hint (`manifest.py`), the recent commits by probing log slots
(`catalog_view.py`) and reads the index: sorted runs (`runs.py`), or the hash partitions of
a v1 catalog until its first compaction converts it. Anything
missing or unreadable is an IntegrityError naming the object; a catalog that lists nothing
where the archive itself is gone (`confirm`) is a StoreError. See docs/archive-format.md.
"""
from __future__ import annotations

import errno
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from lbdask.archive import listing
from lbdask.archive.batch_listing import BATCH_SUFFIX, anything_in, listed_batches, listed_rows
from lbdask.archive.catalog_view import Tracker, View
from lbdask.archive.commit_log import CommitLog, Slot, claim
from lbdask.archive.manifest import Manifest, Manifests
from lbdask.archive.objects import put_atomic
from lbdask.archive.prefetch import prefetch
from lbdask.archive.reads import present, read_object
from lbdask.archive.rows import CatalogRow, dump_rows, parse_rows
from lbdask.archive.runs import RunReader
from lbdask.errors import InputError, IntegrityError
from lbdask.storage import Location

T = TypeVar("T")
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: Reads start over this often when a compaction removes a file between list and read.
READ_ATTEMPTS = 3
#: Parsed index partitions kept in memory per Catalog (they are immutable once written).
PARTITION_CACHE = 16
#: Hex digits of the fan-out subfolder of per-batch objects (`fan`).
FAN_DIGITS = 2


def fan(batch_id: str) -> str:
    """The fan-out subfolder of a batch's objects: the first FAN_DIGITS hex digits of
    sha256(id), so a folder of per-batch objects holds at most 256 subfolders."""
    return hashlib.sha256(batch_id.encode()).hexdigest()[:FAN_DIGITS]


def partition_of(image_id: str, partitions: int) -> int:
    """Index partition of an id: the first 32 bits of sha1(id) modulo the partition count."""
    return int(hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:8], 16) % partitions


class Catalog:
    """Commit, look up and list catalog rows on a folder or S3 prefix."""

    def __init__(self, loc: Location, partitions: int = 256, confirm: Callable[[], None] | None = None,
                 fanned: bool = True) -> None:
        self.loc = loc
        self.fanned = fanned  # format version 3: log slots and folded copies in fan-out subfolders
        self.log = CommitLog(loc, fanned)
        self.confirm = confirm or (lambda: None)  # raises when the archive itself is gone (Archive gives one)
        self.default_partitions = partitions
        self.manifests = Manifests(loc)
        self._batches: dict[str, dict[str, CatalogRow]] = {}  # committed batch objects are immutable
        self._parts: OrderedDict[str, dict[str, CatalogRow]] = OrderedDict()
        self._lock = threading.Lock()  # guards the caches: one Catalog serves many threads
        self._view_lock = threading.Lock()  # one thread advances the view, the others wait for it
        self._view: View | None = None
        self._known: int | None = None  # newest generation this handle has seen
        self._cursor: int | None = None  # the next log slot this handle's commits try
        self._absent: set[str] = set()  # batches is_committed found uncommitted: commit does not ask again
        self.runs = RunReader(loc)  # caches the footers and recently used blocks of v2 runs

    # paths -------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return self.loc.path("catalog", *parts)

    def batch_path(self, batch_id: str) -> str:
        if not BATCH_ID.match(batch_id):
            raise InputError(f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' and '-'")
        return self._p("batches", batch_id + BATCH_SUFFIX)

    def folded_path(self, batch_id: str) -> str:
        """Where a compacted batch's rows are kept (the copy repair rebuilds the index from):
        `catalog/folded/<fan>/<batch>.jsonl.gz`, or flat in archives of format version 1 and 2."""
        if self.fanned:
            return self._p("folded", fan(batch_id), batch_id + BATCH_SUFFIX)
        return self._p("folded", batch_id + BATCH_SUFFIX)

    # writing -----------------------------------------------------------------------
    def commit(self, batch_id: str, rows: Iterable[CatalogRow]) -> bool:
        """Make a batch's rows visible in one atomic write and announce it in the commit log;
        False if it was already committed (asked once per batch: not again right after
        `is_committed` said no)."""
        path = self.batch_path(batch_id)
        with self._lock:
            checked = batch_id in self._absent
            self._absent.discard(batch_id)
        if not checked and self._committed(batch_id):
            return False
        rows = list(rows)
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            raise InputError(f"batch {batch_id} lists an image id more than once")
        for r in rows:
            r.batch_id = batch_id
        put_atomic(self.loc, path, dump_rows(rows))
        self._announce(batch_id)
        return True

    def _announce(self, batch_id: str) -> None:
        """Claim the next free log slot for a committed batch: one exclusive create when no other
        writer took the handle's cursor. Slots are never deleted, so a free slot is the end of the
        log, never a hole a compaction left below its `log_next` (commit_log.py)."""
        cursor = self._cursor
        if cursor is None:
            cursor = self._view.end if self._view is not None else self._discover(self._known).log_next
        self._cursor = claim(self.log, cursor, Slot(0, batch=batch_id)) + 1

    def is_committed(self, batch_id: str) -> bool:
        """True once the batch object exists (or its rows were folded into the index): one
        HEAD, two when it is absent, never a LIST.

        The batch object is checked first: compaction writes the folded copy before it
        deletes the batch object, so one of the two is always there.
        """
        committed = self._committed(batch_id)
        if not committed:
            with self._lock:
                self._absent.add(batch_id)
        return committed

    def known_absent(self, batch_id: str) -> bool:
        """Whether `is_committed` found the batch uncommitted and `commit` has not run since (then
        `commit` does not ask again)."""
        with self._lock:
            return batch_id in self._absent

    def _committed(self, batch_id: str) -> bool:
        return present(self.loc, self.batch_path(batch_id)) or present(self.loc, self.folded_path(batch_id))

    # the manifest and the recent commits --------------------------------------------
    def batch_names(self) -> list[str]:
        """Committed batches not yet folded into the index (one LIST: compaction and repair)."""
        return listed_batches(self.loc, self._p("batches"))

    def folded_names(self) -> list[str]:
        """Batches folded into the index (a recursive LIST of their folded copies)."""
        return listed_batches(self.loc, self._p("folded"))

    def _discover(self, known: int | None) -> Manifest:
        """The latest manifest (`Manifests.discover`); an empty generation 0 before the first
        compaction, once `confirm` said the archive is still there.

        With no manifest but folded batches present, a manifest was lost: IntegrityError,
        not an empty catalog. A compactor creates its manifest before it folds anything, so
        the manifests are listed again after the folded copies were seen: a first compaction
        that committed between the two listings is not mistaken for a loss.
        """
        manifest = self.manifests.discover(known, walks_log=True)  # the view reads the log from log_next
        if manifest is not None:
            return manifest
        if known != 0:  # never looked, or the manifest seen before is gone
            if anything_in(self.loc, self._p("folded")):  # its fan-out subfolders, or flat copies (or legacy markers)
                manifest = self.manifests.latest()
                if manifest is not None:
                    return manifest
                raise IntegrityError(f"the catalog manifest of {self.loc.url} is missing (catalog/manifests/ is "
                                     f"empty but batches were compacted): run `lbdask repair {self.loc.url}`")
            self.confirm()
        return Manifest(partitions=self.default_partitions)

    def _tracker(self) -> Tracker:
        """Made per use, not kept: a kept one's bound methods would make every handle a reference
        cycle, freed only by a full garbage collection (tens of ms at once, once many cold
        handles with their parsed footers had piled up: most of the cold-lookup p99 at 10 M)."""
        return Tracker(self.log, self._discover, self.announced_rows, self._unannounced)

    def view(self) -> View:
        """The latest manifest and the rows announced after it (see catalog_view.py)."""
        with self._view_lock:
            if self._view is None:
                self._view = self._tracker().fresh(self._known)
            else:
                self._view = self._tracker().advance(self._view)
            self._known = self._view.manifest.generation
            return self._view

    def manifest(self) -> Manifest:
        """The latest manifest (an empty generation 0 before the first compaction)."""
        return self.view().manifest

    def refresh(self, rows: bool = True) -> View:
        """A view built afresh from the hint (or one LIST): the manifest found again and checked
        to be still there (compaction builds on it; a warm view only checks the log). With
        `rows` false it reads no batch object (its `recent` is empty: a compaction reads and
        parses each batch once itself) and the handle builds its own view at its next read."""
        with self._view_lock:
            self._view, self._known = None, None
        if not rows:
            return Tracker(self.log, self._discover, lambda _batch: {}, lambda: ({}, [])).fresh(None)
        return self.view()

    def announced_rows(self, batch_id: str) -> dict[str, CatalogRow]:
        """The rows of a batch a log slot announced: its object, or its folded copy when a
        compaction folded it meanwhile."""
        try:
            return self.batch_rows(batch_id)
        except FileNotFoundError:
            path = self.folded_path(batch_id)
            try:
                return {r.id: r for r in parse_rows(path, read_object(self.loc, path))}
            except FileNotFoundError:
                pass
            raise

    def batch_rows(self, batch_id: str) -> dict[str, CatalogRow]:
        with self._lock:
            cached = self._batches.get(batch_id)
        if cached is None:
            path = self.batch_path(batch_id)
            cached = {r.id: r for r in parse_rows(path, read_object(self.loc, path))}
            with self._lock:
                self._batches[batch_id] = cached
        return cached

    def partition_rows(self, key: str) -> dict[str, CatalogRow]:
        """A v1 index partition by id (parsed whole; the most recently used are kept)."""
        with self._lock:
            if key in self._parts:
                self._parts.move_to_end(key)
                return self._parts[key]
        path = self.loc.path(key)
        rows = {r.id: r for r in parse_rows(path, read_object(self.loc, path))}
        with self._lock:
            self._parts[key] = rows
            while len(self._parts) > PARTITION_CACHE:
                self._parts.popitem(last=False)
        return rows

    def forget(self, batch_ids: Iterable[str]) -> None:
        """Drop cached batch objects (they were folded and deleted)."""
        with self._lock:
            for name in batch_ids:
                self._batches.pop(name, None)

    def forget_view(self) -> None:
        """Find the manifest again at the next read (a file the view named is gone)."""
        with self._view_lock:
            self._view = None

    def retrying(self, read: Callable[[], T]) -> T:
        """Run `read` again, on a newly found manifest, when a compaction removed a file it
        was about to read; a file still missing after that was lost: IntegrityError naming it."""
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return read()
            except FileNotFoundError:
                self.forget_view()
        try:
            return read()
        except FileNotFoundError as exc:
            raise IntegrityError(f"catalog object {exc.filename or exc} is missing: "
                                 f"run `lbdask repair {self.loc.url}`") from None

    # reading -----------------------------------------------------------------------
    def get_row(self, image_id: str) -> CatalogRow | None:
        """The row of one id: the recent commits (newest wins), then the index; no LIST."""

        def read() -> CatalogRow | None:
            try:
                view = self.view()
            except IntegrityError:  # a lost manifest: the batch objects still answer for their ids
                row = self.listed_rows(None).get(image_id)
                if row is not None:
                    return row
                raise
            row = view.recent.get(image_id)
            if row is not None:
                return row
            if view.damage:
                raise IntegrityError("; ".join(view.damage))
            return self.indexed(view.manifest, image_id)

        return self.retrying(read)

    def indexed(self, manifest: Manifest, image_id: str) -> CatalogRow | None:
        """The index's row of one id: the runs newest first (a footer and an index partition
        each, read once per handle and all at once when cold, then at most one block), or the
        one v1 partition that can hold it."""
        if manifest.version == 1:
            key = manifest.files.get(partition_of(image_id, manifest.partitions))
            return None if key is None else self.partition_rows(key).get(image_id)
        prefetch(self.runs, manifest.runs, image_id)
        for run in manifest.runs:
            try:
                row = self.runs.get(run, image_id)
            except FileNotFoundError:  # merged away meanwhile, or lost: name the object
                raise FileNotFoundError(errno.ENOENT, "No such object", self.loc.path(run.key)) from None
            if row is not None:
                return row
        return None

    def rows(self, problems: list[str] | None = None) -> Iterator[CatalogRow]:
        """Every readable row once, in ascending id order (`listing.rows`)."""
        return listing.rows(self, problems)

    def _unannounced(self) -> tuple[dict[str, CatalogRow], list[str]]:
        """Rows of batch objects found by a LIST, and the unreadable ones: what a catalog
        without a manifest yet or still in the v1 layout may hold from writers that did not
        announce their commits (lbdask before the commit log)."""
        damage: list[str] = []
        return self.listed_rows(damage), damage

    def listed_rows(self, found: list[str] | None) -> dict[str, CatalogRow]:
        """Rows of every batch object on the store (one LIST): what a damaged catalog, whose
        manifest and so whose log position are lost, still knows (`batch_listing.listed_rows`)."""
        return listed_rows(self, found)
