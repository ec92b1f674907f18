"""The catalog: image id -> CatalogRow, as an LSM of batch objects and a hashed index.

Writers commit one gzip JSON-lines object per batch (`catalog/batches/<batch>.jsonl.gz`,
one PUT or rename: visible all at once or not at all). `compact` folds those objects into
hash-partitioned index files (`catalog/index/g<gen>/p<part>.jsonl.gz`, rows sorted by id)
and then atomically replaces `catalog/index/manifest.json`. A lookup reads the manifest,
one partition and the batch objects not yet folded. See docs/archive-format.md.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import InputError
from ..storage import Location
from .objects import put_atomic
from .rows import CatalogRow, dump_rows, load_rows

T = TypeVar("T")
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
BATCH_SUFFIX = ".jsonl.gz"
#: Lookups retry this often when a compaction removes a file between list and read.
READ_ATTEMPTS = 3
#: Parsed index partitions kept in memory per Catalog (they are immutable once written).
PARTITION_CACHE = 16


def partition_of(image_id: str, partitions: int) -> int:
    """Index partition of an id: the first 32 bits of sha1(id) modulo the partition count."""
    return int(hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:8], 16) % partitions


@dataclass
class Manifest:
    """Current index generation: which file holds each non-empty partition."""

    generation: int = 0
    partitions: int = 256
    files: dict[int, str] = field(default_factory=dict)  # partition -> path relative to the root

    def to_json(self) -> bytes:
        files = {str(k): v for k, v in sorted(self.files.items())}
        return json.dumps({"generation": self.generation, "partitions": self.partitions, "files": files}, indent=1).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(blob)
        return cls(data["generation"], data["partitions"], {int(k): v for k, v in data["files"].items()})


class Catalog:
    """Commit, look up and list catalog rows on a folder or S3 prefix."""

    def __init__(self, loc: Location, partitions: int = 256) -> None:
        self.loc = loc
        self.default_partitions = partitions
        self._batches: dict[str, dict[str, CatalogRow]] = {}  # committed batch objects are immutable
        self._parts: OrderedDict[str, dict[str, CatalogRow]] = OrderedDict()

    # paths -------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return self.loc.path("catalog", *parts)

    def _batch_path(self, batch_id: str) -> str:
        if not BATCH_ID.match(batch_id):
            raise InputError(f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' and '-'")
        return self._p("batches", batch_id + BATCH_SUFFIX)

    def _exists(self, path: str) -> bool:
        self.loc.fs.invalidate_cache(path)
        return self.loc.fs.exists(path)

    # writing -----------------------------------------------------------------------
    def commit(self, batch_id: str, rows: Iterable[CatalogRow]) -> bool:
        """Make a batch's rows visible in one atomic write; False if it was already committed."""
        path = self._batch_path(batch_id)
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
        """True once the batch object exists (or its rows were folded into the index)."""
        return self._exists(self._batch_path(batch_id)) or self._exists(self._p("folded", batch_id))

    # reading -----------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The current index manifest (generation 0, no files, before any compaction)."""
        try:
            return Manifest.from_json(self.loc.fs.cat_file(self._p("index", "manifest.json")))
        except FileNotFoundError:
            return Manifest(partitions=self.default_partitions)

    def _batch_names(self) -> list[str]:
        d = self._p("batches")
        self.loc.fs.invalidate_cache(d)
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.loc.fs.ls(d, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(n[: -len(BATCH_SUFFIX)] for n in names if n.endswith(BATCH_SUFFIX))

    def _batch_rows(self, batch_id: str) -> dict[str, CatalogRow]:
        if batch_id not in self._batches:
            blob = self.loc.fs.cat_file(self._batch_path(batch_id))
            self._batches[batch_id] = {r.id: r for r in load_rows(blob)}
        return self._batches[batch_id]

    def _partition_rows(self, key: str) -> dict[str, CatalogRow]:
        if key in self._parts:
            self._parts.move_to_end(key)
            return self._parts[key]
        rows = {r.id: r for r in load_rows(self.loc.fs.cat_file(self.loc.path(key)))}
        self._parts[key] = rows
        if len(self._parts) > PARTITION_CACHE:
            self._parts.popitem(last=False)
        return rows

    def _retrying(self, read: Callable[[], T]) -> T:
        for attempt in range(READ_ATTEMPTS):
            try:
                return read()
            except FileNotFoundError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def get_row(self, image_id: str) -> CatalogRow | None:
        """The row of one id: one index partition plus the batch objects not yet folded."""

        def read() -> CatalogRow | None:
            names = self._batch_names()  # listed before the manifest: see docs/archive-format.md
            manifest = self.manifest()
            for name in reversed(names):
                row = self._batch_rows(name).get(image_id)
                if row is not None:
                    return row
            key = manifest.files.get(partition_of(image_id, manifest.partitions))
            return None if key is None else self._partition_rows(key).get(image_id)

        return self._retrying(read)

    def rows(self) -> Iterator[CatalogRow]:
        """Every row once: unfolded batches first (newest wins), then the index partitions."""

        def snapshot() -> tuple[dict[str, CatalogRow], Manifest]:
            names = self._batch_names()
            manifest = self.manifest()
            recent: dict[str, CatalogRow] = {}
            for name in names:
                recent.update(self._batch_rows(name))
            return recent, manifest

        recent, manifest = self._retrying(snapshot)
        yield from recent.values()
        for part in sorted(manifest.files):
            blob = self.loc.fs.cat_file(self.loc.path(manifest.files[part]))
            for row in load_rows(blob):
                if row.id not in recent:
                    yield row

    # compaction --------------------------------------------------------------------
    def compact(self) -> dict[str, int]:
        """Fold all committed batch objects into a new index generation (single compactor).

        Order matters for concurrent readers: new partition files, then the manifest
        (atomic), then a `folded/<batch>` marker per batch, then the batch objects are
        deleted, then superseded partition files.
        """
        names = self._batch_names()
        old = self.manifest()
        if not names:
            return {"batches": 0, "rows": 0, "generation": old.generation}
        by_part: dict[int, dict[str, CatalogRow]] = {}
        n_rows = 0
        for name in names:
            for row in self._batch_rows(name).values():
                by_part.setdefault(partition_of(row.id, old.partitions), {})[row.id] = row
                n_rows += 1
        new = Manifest(old.generation + 1, old.partitions, dict(old.files))
        for part, fresh in sorted(by_part.items()):
            merged = {} if part not in old.files else {r.id: r for r in load_rows(self.loc.fs.cat_file(self.loc.path(old.files[part])))}
            merged.update(fresh)
            key = f"catalog/index/g{new.generation:06d}/p{part:05d}{BATCH_SUFFIX}"
            put_atomic(self.loc, self.loc.path(key), dump_rows(merged[i] for i in sorted(merged)))
            new.files[part] = key
        put_atomic(self.loc, self._p("index", "manifest.json"), new.to_json())
        for name in names:
            put_atomic(self.loc, self._p("folded", name), b"")
        self.loc.fs.rm([self._batch_path(n) for n in names])
        superseded = [self.loc.path(old.files[p]) for p in by_part if p in old.files]
        if superseded:
            self.loc.fs.rm(superseded)
        for name in names:
            self._batches.pop(name, None)
        return {"batches": len(names), "rows": n_rows, "generation": new.generation}
