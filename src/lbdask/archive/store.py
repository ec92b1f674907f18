"""The archive: a Zarr v3 group of sharded latent buckets, stored copies and a catalog.

Writers never share an object: the driver creates buckets and hands out fresh shard
numbers, each batch writes its own shards, stored-copies object and commit object. The
on-store layout is described in docs/archive-format.md.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lbdask.archive.batch_listing import committed_rows
from lbdask.archive.catalog import BATCH_ID, Catalog, fan
from lbdask.archive.compaction import compact
from lbdask.archive.creation import (
    ATTR,
    archive_meta,
    refuse_foreign,
    require_archive,
    require_root,
    root_attributes,
    set_format_version,
)
from lbdask.archive.latent_shards import LatentShards
from lbdask.archive.meta import FOLDER as META_FOLDER
from lbdask.archive.meta import offload
from lbdask.archive.objects import STORE_ATTEMPTS, put_atomic, store_errors, store_retries
from lbdask.archive.rows import CatalogRow, OriginalRef
from lbdask.archive.snapshot import CatalogSnapshot
from lbdask.config import load_config
from lbdask.errors import ArchiveFormatError, InputError, IntegrityError, ModelMismatchError, NotFoundError
from lbdask.storage import Location, open_location

#: On-store format version of new archives: 3 since the commit log and the folded copies lie
#: in fan-out subfolders; 2 keeps them flat (sorted runs and a commit log, issue 25); 1 is the
#: hash-partitioned catalog. Versions 1 and 2 still open, read, commit and compact in their
#: layout; the first compaction of a version 1 archive makes it version 2, and `lbdask upgrade`
#: makes either version 3 (`relayout.py`). Any other is refused.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: The last version whose commit log and folded copies are flat folders.
FLAT_VERSION = 2


@dataclass
class ArchiveConfig:
    """Layout defaults from configs/archive.yaml."""

    shard_size: int = 64
    index_partitions: int = 256

    def validate(self) -> None:
        if self.shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        if not 1 <= self.index_partitions <= 65536:
            raise ValueError("index_partitions must be between 1 and 65536")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Archive(LatentShards):
    """One lbdask archive on a folder or an S3 prefix (see docs/architecture.md); its latent
    buckets and shards: `LatentShards`."""

    def __init__(self, loc: Location, meta: dict[str, Any], mode: str, storage_options: dict[str, Any] | None) -> None:
        super().__init__()
        self.loc = loc
        self.url = loc.url
        self.mode = mode
        self.storage_options = storage_options
        self._meta = meta
        self.catalog = self._catalog()

    def _catalog(self) -> Catalog:
        """A catalog handle in the archive's layout (fan-out from format version 3)."""
        return Catalog(self.loc, partitions=int(self._meta.get("index_partitions", 256)),
                       confirm=lambda: require_archive(self.loc), fanned=self.format_version > FLAT_VERSION)

    def set_format_version(self, version: int) -> None:
        """Record `version` in DEST's metadata; this handle's catalog follows its layout."""
        set_format_version(self.loc, version)
        self._meta["format_version"] = version
        self.catalog = self._catalog()

    # opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, dest: str, model_info: dict[str, Any], storage_options: dict[str, Any] | None = None,
               shard_size: int | None = None) -> Archive:
        """Create the archive, or open it when it already exists for the same model.

        Creation is resumable: until the lbdask attribute is written (last) DEST holds at
        most the Zarr group objects, and creating again completes it. A DEST holding
        anything else that is not an archive is refused, never written into.
        """
        loc = open_location(dest, storage_options)
        with store_errors(dest):
            if archive_meta(loc) is not None:
                arc = cls.open(dest, mode="a", storage_options=storage_options)
                arc.check_model(model_info["fingerprint"], model_info.get("name"))
                return arc
            refuse_foreign(loc)
            config = load_config("archive", ArchiveConfig)
            meta = {
                "format_version": FORMAT_VERSION,
                "model": dict(model_info),
                "shard_size": int(shard_size or config.shard_size),
                "index_partitions": config.index_partitions,
                "created": _now(),
            }
            if meta["shard_size"] < 1:
                raise InputError(f"shard size must be at least 1, got {shard_size}")
            from lbdask.archive.latents import create_group  # zarr: only a migration creates archives

            create_group(loc, storage_options, ATTR, meta)
        return cls(loc, meta, "a", storage_options)

    @classmethod
    def open(cls, dest: str, mode: str = "r", storage_options: dict[str, Any] | None = None,
             attempts: int = STORE_ATTEMPTS) -> Archive:
        """Open an existing archive; NotFoundError when `dest` exists but is not one, StoreError
        after `attempts` tries when `dest` does not exist or cannot be reached."""
        if mode not in ("r", "a"):
            raise InputError(f"archive mode must be 'r' or 'a', got {mode!r}")
        loc = open_location(dest, storage_options)

        def read() -> dict[str, Any] | None:
            with store_errors(dest):
                loc.fs.invalidate_cache(loc.root)  # a listing cached by this process may predate the archive
                found = root_attributes(loc)  # zarr.json read as JSON: no Zarr until a latent is used
                if found is None:
                    require_root(loc)
            return found

        attributes = store_retries(read, dest, attempts)
        if attributes is None:
            raise NotFoundError(f"no lbdask archive at {dest}")
        meta = attributes.get(ATTR)
        if not isinstance(meta, dict):
            raise NotFoundError(f"{dest} is a Zarr group but not an lbdask archive")
        version = meta.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ArchiveFormatError(f"{dest} uses archive format version {version}; this lbdask reads versions "
                                     f"{' and '.join(map(str, READABLE_VERSIONS))}")
        return cls(loc, meta, mode, storage_options)

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships an Archive to workers by reopening it there.
        return (Archive.open, (self.url, self.mode, self.storage_options))

    # metadata ----------------------------------------------------------------------
    @property
    def model_info(self) -> dict[str, Any]:
        """name, fingerprint, latent_channels, downsample, config of the archive's model."""
        return dict(self._meta["model"])

    @property
    def shard_size(self) -> int:
        return int(self._meta["shard_size"])

    @property
    def format_version(self) -> int:
        return int(self._meta["format_version"])

    def check_model(self, fingerprint: str, name: str | None = None) -> None:
        """ModelMismatchError unless `fingerprint` is the archive's model."""
        mine = self._meta["model"]
        if fingerprint != mine.get("fingerprint"):
            other = f"{name} ({fingerprint[:12]})" if name else f"fingerprint {fingerprint[:12]}"
            raise ModelMismatchError(
                f"archive {self.url} was written with model {mine.get('name')} ({str(mine.get('fingerprint'))[:12]}), "
                f"not {other}")

    # stored copies (`originals/`, docs/glossary.md) ----------------------------------
    def put_originals(self, batch_id: str, originals: dict[str, bytes], folder: str = "originals") -> dict[str, OriginalRef]:
        """Store a batch's stored copies (kept and lossy copies, raw bytes of failed inputs)
        byte-identical in one object; returns where each lies. (`folder` "pixels": the pixel
        copies of the pixel tier, lbdask.retier.)"""
        key = self.batch_object(folder, batch_id)
        refs, offset = {}, 0
        for image_id, data in originals.items():
            refs[image_id] = OriginalRef(key, offset, len(data))
            offset += len(data)
        with store_errors(self.url):
            put_atomic(self.loc, self.loc.path(key), b"".join(originals.values()))
        return refs

    @staticmethod
    def batch_object(folder: str, batch_id: str) -> str:
        """`<folder>/<fan>/<batch_id>.bin`, the one object of a batch in `folder` (InputError for a
        bad id): `fan`, two hex digits of the id's sha256, spreads a job's objects over 256
        subfolders. Readers take the key from the row (archives written before it: `<folder>/<id>.bin`)."""
        if not BATCH_ID.match(batch_id):
            raise InputError(f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' and '-'")
        return f"{folder}/{fan(batch_id)}/{batch_id}.bin"

    def read_original(self, row: CatalogRow) -> bytes:
        """The bytes of a row's stored copy (the source PNG, a JPEG XL kept or lossy copy, or a
        failed input's raw bytes; the row field `original`), checked against their sha256."""
        if row.original is None:
            raise NotFoundError(f"image {row.id!r} has no stored copy in archive {self.url}")
        # a jxl copy is not the source's bytes
        return self.read_ref(row.id, row.original, row.stored_sha256 or row.source_sha256, "stored copy")

    def read_pixels(self, row: CatalogRow) -> bytes:
        """The PNG of a row's pixel-tier copy (lbdask.retier), checked against its sha256."""
        if row.pixel is None:
            raise NotFoundError(f"image {row.id!r} has no pixel-tier copy in archive {self.url}")
        return self.read_ref(row.id, row.pixel, row.pixel_sha256, "pixel copy")

    def read_ref(self, image_id: str, ref: OriginalRef, expected: str | None, what: str) -> bytes:
        """The bytes at `ref`, checked for presence, length and sha256 `expected` (IntegrityError)."""
        data = b""
        if ref.size:  # S3 refuses an empty byte range
            with store_errors(self.url):
                try:
                    data = self.loc.fs.cat_file(self.loc.path(ref.key), start=ref.offset, end=ref.offset + ref.size)
                except FileNotFoundError:
                    require_archive(self.loc)  # the whole archive gone (renamed, unmounted): StoreError
                    raise IntegrityError(f"{what} of {image_id!r}: object {ref.key} is missing from {self.url}") from None
        if len(data) != ref.size:
            raise IntegrityError(f"{what} of {image_id!r}: object {ref.key} in {self.url} is truncated")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"{what} of {image_id!r}: object {ref.key} in {self.url} does not match its sha256")
        return data

    # catalog -----------------------------------------------------------------------
    def commit(self, batch_id: str, rows: Sequence[CatalogRow]) -> bool:
        """Make a batch visible atomically; False (and nothing written) if already committed.
        The rows' large PNG metadata goes first into `meta/<fan>/<batch_id>.bin` (lbdask.archive.meta),
        after the committed check (asked here unless `is_committed` just said no)."""
        with store_errors(self.url):
            if not self.catalog.known_absent(batch_id) and self.catalog.is_committed(batch_id):
                return False
        rows = offload(self, self.batch_object(META_FOLDER, batch_id), rows)
        with store_errors(self.url):
            return self.catalog.commit(batch_id, rows)

    def is_committed(self, batch_id: str) -> bool:
        with store_errors(self.url):
            return self.catalog.is_committed(batch_id)

    def get_row(self, image_id: str) -> CatalogRow | None:
        """One id's row: the recent commits (log slots), then the catalog's sorted runs; no LIST."""
        with store_errors(self.url):
            return self.catalog.get_row(image_id)

    def rows(self, problems: list[str] | None = None) -> Iterator[CatalogRow]:
        """Every readable catalog row once; damage goes to `problems` or is raised at the end."""
        with store_errors(self.url):
            yield from self.catalog.rows(problems)

    def snapshot(self, max_age: float = 30.0) -> CatalogSnapshot:
        """Thread-safe lookups pinned to the current catalog generation (serving)."""
        return CatalogSnapshot(self.catalog, max_age)

    def committed_rows(self, unfolded: list[CatalogRow] | None = None) -> Iterator[CatalogRow]:
        """Every row any committed batch ever wrote, superseded ones included (the retier sweep);
        the rows of batch objects not folded yet also go to `unfolded`."""
        with store_errors(self.url):
            yield from committed_rows(self.catalog, unfolded)

    def committed_ids(self) -> set[str]:
        return {r.id for r in self.rows()}

    def compact(self) -> dict[str, int]:
        """Fold committed batches into the catalog's sorted runs (safe beside other compactors).
        A version 1 archive becomes version 2 first: its catalog is converted by this fold,
        and lbdask versions that read only version 1 must not open it after that. The layout
        stays (flat log and folded copies until `lbdask upgrade`: writers that opened the
        archive before keep writing where they did)."""
        with store_errors(self.url):
            if self.format_version < FLAT_VERSION:
                self.set_format_version(FLAT_VERSION)
            return compact(self.catalog)

    # JSON records (model table, lbdask.archive.history) -----------------------------
    def json_paths(self, folder: str) -> list[str]:
        """The `.json` objects directly under `folder`, sorted by name (none when it is absent)."""
        d = self.loc.path(folder)
        with store_errors(self.url):
            self.loc.fs.invalidate_cache(d)
            try:
                return sorted(p for p in self.loc.fs.ls(d, detail=False) if p.endswith(".json"))
            except FileNotFoundError:
                return []

    def bytes_on_store(self) -> dict[str, int]:
        """Actual bytes under latents/ (incl. Zarr metadata), originals/, catalog/, meta/ (PNG metadata)
        and pixels/ (the pixel tier)."""
        out = {}
        with store_errors(self.url):
            for part in ("latents", "originals", "catalog", META_FOLDER, "pixels"):
                d = self.loc.path(part)
                self.loc.fs.invalidate_cache(d)
                try:
                    out[part] = int(self.loc.fs.du(d, total=True))
                except FileNotFoundError:
                    out[part] = 0
        return out
