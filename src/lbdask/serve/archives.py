"""The archives one serving worker reads: each opened once under one spelling, rows fetched with retries.

A fetch (in the I/O pool) reads a row and what the latent tier holds for it (`Stored`): the
checksummed latent of a latent row, with the model of a row another model wrote (lbdask retier
re-encode; lbdask.models.row_models, loaded once), or for every other row the bytes a reader gets
(lbdask.reader.stored_copy). A fetch that finds its object gone reads the row again once (a
retier sweep may have moved it); a StoreError is retried `fetch_retries` times.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import with_chunks
from lbdask.errors import IntegrityError, StoreError, UnknownImageError
from lbdask.latent.codec import EncodedLatent
from lbdask.models.row_models import RowModels
from lbdask.reader import stored_copy
from lbdask.serve.freshness import CatalogWatch
from lbdask.serve.settings import WorkerConfig
from lbdask.storage import canonical_url

T = TypeVar("T")
#: Called with each row before its stored form is read (benchmarks: serve.store_latency).
FetchHook = Callable[[CatalogRow], None]


def no_hook(row: CatalogRow) -> None:
    """The production fetch hook: nothing."""


@dataclass(frozen=True)
class Stored:
    """What the latent tier holds for one id: its catalog row and stored form.

    For latent rows the checksummed latent, and `model` for a row another model than the
    archive's wrote (it decodes on this worker, never spilled); for every other row the bytes
    a reader gets (read once at fetch), so a "latent hit" returns them as they are.
    """

    row: CatalogRow
    latent: EncodedLatent | None = None
    original: bytes | None = None
    model: Any = field(default=None, compare=False)

    @property
    def nbytes(self) -> int:
        return self.latent.data.nbytes if self.latent is not None else len(self.original or b"")


class ServedArchives:
    """Archives by spelling and storage options, opened once (their model checked); thread-safe."""

    def __init__(self, config: WorkerConfig, watch: CatalogWatch, model_check: Callable[[Archive], None] | None = None,
                 before_read: FetchHook | None = None) -> None:
        self.config = config
        self.watch = watch
        self.retries = 0                   # extra attempts made after a StoreError
        self._model_check = model_check    # raise if the resident model does not fit an archive
        self._before_read = before_read or no_hook
        self._archives: dict[str, Archive] = {}
        self._spellings: dict[str, str] = {}  # dest as a client typed it -> canonical_url(dest)
        self._row_models: dict[str, RowModels] = {}  # archive url -> models of its re-encoded rows (None: its own)
        self._lock = threading.Lock()

    def canonical(self, dest: str) -> str:
        """The one spelling of archive `dest` that keys its cache entries, open archive, access
        statistics and catalog watch (`archive`, `./archive/` and `file://...` are one archive);
        remembered per spelling, so a cache hit stays a dict access."""
        canon = self._spellings.get(dest)
        if canon is None:
            canon = self._spellings.setdefault(dest, canonical_url(dest))
        return canon

    def open(self, dest: str, options: dict | None) -> Archive:
        """The open archive `dest` (opened once per worker, its model checked)."""
        dest = self.canonical(dest)
        ident = dest + json.dumps(options or {}, sort_keys=True)
        with self._lock:
            archive = self._archives.get(ident)
        if archive is None:  # one try per attempt: the attempts are this worker's (`fetch_retries`)
            archive = self.with_retries(lambda: Archive.open(dest, mode="r", storage_options=options, attempts=1), dest)
            if self._model_check is not None and archive.model_info.get("fingerprint"):
                self._model_check(archive)
            with self._lock:
                archive = self._archives.setdefault(ident, archive)
            self.watch.add(ident, dest, archive)
        return archive

    def fetch(self, archive: Archive, dest: str, image_id: str) -> Stored:
        """Row + stored form of one id of the open `archive`, with bounded retries."""
        def lookup() -> CatalogRow:
            row = archive.get_row(image_id)
            if row is None:
                raise UnknownImageError(image_id, f"no image '{image_id}' in archive {dest}")
            return row

        def attempt() -> Stored:
            row = lookup()
            self._before_read(row)
            try:
                return self._stored(archive, row)
            except IntegrityError:  # its object gone or changed: the row may have moved on (a retier sweep)
                fresh = lookup()
                if fresh == row:
                    raise
                return self._stored(archive, fresh)

        return self.with_retries(attempt, dest)

    def _stored(self, archive: Archive, row: CatalogRow) -> Stored:
        """What the latent tier holds for `row`, read from `archive`."""
        copy = stored_copy(archive, row)  # pixel-tier, kept, lossy, failed: the reader's bytes
        if copy is not None:
            return Stored(row, original=copy)
        with self._lock:
            models = self._row_models.setdefault(archive.url, RowModels(archive, lambda: None))
        # the row's PNG metadata inline: the worker's decode rebuilds the PNG with it
        return Stored(with_chunks(archive, row), latent=archive.read_latent(row), model=models.for_row(row))

    def with_retries(self, fn: Callable[[], T], dest: str) -> T:
        """Run `fn`; retry StoreError `fetch_retries` times with linear backoff, then give up."""
        c = self.config
        for attempt in range(c.fetch_retries + 1):
            try:
                return fn()
            except StoreError as exc:
                last = exc
                if attempt < c.fetch_retries:
                    self.retries += 1
                    time.sleep((attempt + 1) * c.retry_backoff_ms / 1000)
        raise StoreError(f"archive {dest} unreachable after {c.fetch_retries + 1} attempts: {last}")
