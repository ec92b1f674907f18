"""The catalog: image id -> CatalogRow, as an LSM of batch objects and a hashed index.

Writers commit one gzip JSON-lines object per batch (`catalog/batches/<batch>.jsonl.gz`,
one PUT or rename: visible all at once or not at all). `compaction.compact` folds those
objects into hash-partitioned index files and commits a new manifest generation by
exclusive create (compare-and-swap); the folded batch keeps a copy of its rows under
`catalog/folded/`, so a lost manifest or partition can be rebuilt (`repair.py`). A lookup
reads the latest manifest, one partition and the batch objects not yet folded. Anything
missing or unreadable is an IntegrityError naming the object; a catalog that lists nothing
where the archive itself is gone (`confirm`) is a StoreError. See docs/archive-format.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from lbdask.archive.manifest import Manifest, Manifests
from lbdask.archive.objects import put_atomic
from lbdask.archive.rows import CatalogRow, dump_rows, load_rows
from lbdask.errors import InputError, IntegrityError
from lbdask.storage import Location

T = TypeVar("T")
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
BATCH_SUFFIX = ".jsonl.gz"
#: Reads start over this often when a compaction removes a file between list and read.
READ_ATTEMPTS = 3
#: Parsed index partitions kept in memory per Catalog (they are immutable once written).
PARTITION_CACHE = 16


def partition_of(image_id: str, partitions: int) -> int:
    """Index partition of an id: the first 32 bits of sha1(id) modulo the partition count."""
    return int(hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:8], 16) % partitions


def parse_rows(path: str, blob: bytes) -> list[CatalogRow]:
    """Rows of a catalog object; IntegrityError naming it when it is not what was written."""
    try:
        return load_rows(blob)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"catalog object {path} is unreadable ({type(exc).__name__})") from None


class Catalog:
    """Commit, look up and list catalog rows on a folder or S3 prefix."""

    def __init__(self, loc: Location, partitions: int = 256, confirm: Callable[[], None] | None = None) -> None:
        self.loc = loc
        self.confirm = confirm or (lambda: None)  # raises when the archive itself is gone (Archive gives one)
        self.default_partitions = partitions
        self.manifests = Manifests(loc)
        self._batches: dict[str, dict[str, CatalogRow]] = {}  # committed batch objects are immutable
        self._parts: OrderedDict[str, dict[str, CatalogRow]] = OrderedDict()
        self._lock = threading.Lock()  # guards both caches: one Catalog serves many threads

    # paths -------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return self.loc.path("catalog", *parts)

    def batch_path(self, batch_id: str) -> str:
        if not BATCH_ID.match(batch_id):
            raise InputError(f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' and '-'")
        return self._p("batches", batch_id + BATCH_SUFFIX)

    def folded_path(self, batch_id: str) -> str:
        """Where a compacted batch's rows are kept (the copy repair rebuilds the index from)."""
        return self._p("folded", batch_id + BATCH_SUFFIX)

    def _exists(self, path: str) -> bool:
        self.loc.fs.invalidate_cache(path)
        return self.loc.fs.exists(path)

    # writing -----------------------------------------------------------------------
    def commit(self, batch_id: str, rows: Iterable[CatalogRow]) -> bool:
        """Make a batch's rows visible in one atomic write; False if it was already committed."""
        path = self.batch_path(batch_id)
        if self.is_committed(batch_id):
            return False
        rows = list(rows)
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            raise InputError(f"batch {batch_id} lists an image id more than once")
        for r in rows:
            r.batch_id = batch_id
        put_atomic(self.loc, path, dump_rows(rows))
        return True

    def is_committed(self, batch_id: str) -> bool:
        """True once the batch object exists (or its rows were folded into the index).

        The batch object is checked first: compaction writes the folded copy before it
        deletes the batch object, so one of the two is always there.
        """
        return self._exists(self.batch_path(batch_id)) or self._exists(self.folded_path(batch_id))

    # reading -----------------------------------------------------------------------
    def _names(self, folder: str) -> list[str]:
        d = self._p(folder)
        self.loc.fs.invalidate_cache(d)
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.loc.fs.ls(d, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(n[: -len(BATCH_SUFFIX)] for n in names if n.endswith(BATCH_SUFFIX))

    def batch_names(self) -> list[str]:
        """Committed batches not yet folded into the index (one LIST)."""
        return self._names("batches")

    def folded_names(self) -> list[str]:
        """Batches folded into the index (one LIST of their folded copies)."""
        return self._names("folded")

    def manifest(self) -> Manifest:
        """The latest manifest; an empty generation 0 before the first compaction, once
        `confirm` said the archive is still there (a renamed archive lists nothing either).

        With no manifest but folded batches present, a manifest was lost: IntegrityError,
        not an empty catalog. A compactor creates its manifest before it folds anything, so
        the manifests are listed again after the folded copies were seen: a first compaction
        that committed between the two listings is not mistaken for a loss.
        """
        manifest = self.manifests.latest()
        if manifest is not None:
            return manifest
        if self.folded_names():
            manifest = self.manifests.latest()
            if manifest is not None:
                return manifest
            raise IntegrityError(f"the catalog manifest of {self.loc.url} is missing (catalog/manifests/ is empty "
                                 f"but batches were compacted): run `lbdask repair {self.loc.url}`")
        self.confirm()
        return Manifest(partitions=self.default_partitions)

    def batch_rows(self, batch_id: str) -> dict[str, CatalogRow]:
        with self._lock:
            cached = self._batches.get(batch_id)
        if cached is None:
            path = self.batch_path(batch_id)
            cached = {r.id: r for r in parse_rows(path, self.loc.fs.cat_file(path))}
            with self._lock:
                self._batches[batch_id] = cached
        return cached

    def partition_rows(self, key: str) -> dict[str, CatalogRow]:
        with self._lock:
            if key in self._parts:
                self._parts.move_to_end(key)
                return self._parts[key]
        path = self.loc.path(key)
        rows = {r.id: r for r in parse_rows(path, self.loc.fs.cat_file(path))}
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

    def retrying(self, read: Callable[[], T]) -> T:
        """Run `read` again when a compaction removed a file it listed; a file still missing
        after that was lost: IntegrityError naming it."""
        for _ in range(READ_ATTEMPTS - 1):
            with contextlib.suppress(FileNotFoundError):
                return read()
        try:
            return read()
        except FileNotFoundError as exc:
            raise IntegrityError(f"catalog object {exc.filename or exc} is missing: "
                                 f"run `lbdask repair {self.loc.url}`") from None

    def get_row(self, image_id: str) -> CatalogRow | None:
        """The row of one id: the batch objects not yet folded, then one index partition."""

        def read() -> CatalogRow | None:
            for name in reversed(self.batch_names()):  # listed before the manifest: see docs/archive-format.md
                row = self.batch_rows(name).get(image_id)
                if row is not None:
                    return row
            manifest = self.manifest()
            key = manifest.files.get(partition_of(image_id, manifest.partitions))
            return None if key is None else self.partition_rows(key).get(image_id)

        return self.retrying(read)

    def rows(self, problems: list[str] | None = None) -> Iterator[CatalogRow]:
        """Every readable row once: unfolded batches first (newest wins), then the index.

        A missing or unreadable manifest or partition does not hide the other rows: each is
        described in `problems` (when given) or raised as one IntegrityError at the end.
        """
        found: list[str] = []

        def snapshot() -> tuple[dict[str, CatalogRow], Manifest]:
            recent: dict[str, CatalogRow] = {}
            for name in self.batch_names():
                try:
                    recent.update(self.batch_rows(name))
                except IntegrityError as exc:
                    found.append(str(exc))
            try:
                return recent, self.manifest()
            except IntegrityError as exc:
                found.append(str(exc))
                return recent, Manifest()

        recent, manifest = self.retrying(snapshot)
        yield from recent.values()
        files = dict(manifest.files)  # updated when a compaction replaces a partition meanwhile
        for part in sorted(files):
            try:
                rows = self.retrying(lambda: self._current_partition(part, files))
            except IntegrityError as exc:
                found.append(f"index partition {part}: {exc}")
                continue
            yield from (row for row in rows.values() if row.id not in recent)
        if problems is not None:
            problems.extend(found)
        elif found:
            raise IntegrityError("; ".join(found))

    def committed_rows(self) -> Iterator[CatalogRow]:
        """Every row of every committed batch, superseded ones included: the batch objects,
        then the folded copies (listed second, so a batch folded meanwhile is still seen).
        A folded copy that cannot be read is skipped: its rows are then not known to this
        listing (the retier sweep leaves their data alone)."""
        pending = self.batch_names()
        folded = self.folded_names()
        if not pending and not folded:
            self.confirm()
        for name in pending:
            try:
                yield from self.batch_rows(name).values()
            except FileNotFoundError:  # folded since listed; its copy was written before the delete
                folded.append(name)
        for name in sorted(set(folded)):
            path = self.folded_path(name)
            try:
                yield from parse_rows(path, self.loc.fs.cat_file(path))
            except (FileNotFoundError, IntegrityError):
                continue

    def _current_partition(self, part: int, files: dict[int, str]) -> dict[str, CatalogRow]:
        """Partition `part` as listed in `files`; when its file is gone because a compaction
        replaced it, `files` is pointed at the newer file before the caller retries."""
        try:
            return self.partition_rows(files[part])
        except FileNotFoundError:
            newer = self.manifests.latest()
            if newer is not None and newer.files.get(part) not in (None, files[part]):
                files[part] = newer.files[part]
            raise
