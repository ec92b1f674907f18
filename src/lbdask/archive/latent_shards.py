"""The latent side of an Archive: bucket names, shard numbers and keys, shard writes and
checked latent reads, through `latents.LatentBuckets` opened on first use, so that listing
and kept reads never import zarr. A mixin of `store.Archive` (one handle, one object for
users); the layout is in docs/archive-format.md.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lbdask.archive.creation import require_archive
from lbdask.archive.rows import CatalogRow
from lbdask.errors import IntegrityError, NotFoundError
from lbdask.storage import Location

if TYPE_CHECKING:
    from lbdask.archive.latents import LatentBuckets
    from lbdask.latent.codec import EncodedLatent


class LatentShards:
    """Latent buckets and their shards for an Archive (which provides the attributes below)."""

    loc: Location
    url: str
    mode: str
    storage_options: dict[str, Any] | None
    shard_size: int  # the archive's metadata

    def __init__(self) -> None:
        self._buckets: LatentBuckets | None = None
        self._buckets_lock = threading.Lock()

    @property
    def _latents(self) -> LatentBuckets:
        """The Zarr side, opened on first use: listing and kept reads never import zarr."""
        with self._buckets_lock:
            if self._buckets is None:
                from lbdask.archive.latents import LatentBuckets

                self._buckets = LatentBuckets(self.loc, self.storage_options, self.mode, self.shard_size)
            return self._buckets

    @staticmethod
    def bucket_name(bits: int, c: int, h: int, w: int) -> str:
        """Name of the Zarr array holding latents of this padded shape and precision."""
        return f"b{bits}-c{c}-{h}x{w}"

    def ensure_bucket(self, name: str, bits: int, c: int, h: int, w: int) -> None:
        """Create the bucket array if missing (driver only; idempotent)."""
        self._latents.ensure(name, bits, c, h, w)

    def allocate_shards(self, bucket: str, n: int) -> int:
        """First of `n` fresh shard numbers (driver only): never one allocated or present before."""
        return self._latents.allocate(bucket, n)

    def allocate_shards_for(self, wants: Sequence[tuple[str, int, int, int, int]]) -> list[int]:
        """One fresh shard number per (bucket, bits, c, h, w) of `wants`, in order (driver only):
        each bucket is created if missing and all its shards allocated in one call, so a whole
        plan of batches (migrate) or chunks (retier) costs one allocation per bucket."""
        counts = Counter(want[0] for want in wants)
        next_free: dict[str, int] = {}
        for want in wants:
            if want[0] not in next_free:
                self.ensure_bucket(*want)
                next_free[want[0]] = self.allocate_shards(want[0], counts[want[0]])
        numbers = []
        for name, *_shape in wants:
            numbers.append(next_free[name])
            next_free[name] += 1
        return numbers

    def write_shard(self, bucket: str, shard: int, encoded: Sequence[EncodedLatent]) -> list[int]:
        """Write up to `shard_size` latents into shard `shard` (durably); returns their bucket indices."""
        return self._latents.write(bucket, shard, encoded)

    @staticmethod
    def shards_folder(bucket: str) -> str:
        """Where the shard objects of `bucket` lie, relative to the archive root."""
        return f"latents/{bucket}/c"

    @staticmethod
    def shard_key(bucket: str, shard: int) -> str:
        """The object of shard `shard` of `bucket` (Zarr v3 key `c/<shard>/0/0/0`), relative to the root."""
        return f"{LatentShards.shards_folder(bucket)}/{shard}/0/0/0"

    def read_latent(self, row: CatalogRow) -> EncodedLatent:
        """The stored latent of a latent row, checksum verified (IntegrityError)."""
        if row.status != "latent" or row.bucket is None or row.index is None or row.bits is None:
            raise NotFoundError(f"image {row.id!r} has no latent in archive {self.url} (status {row.status})")
        try:
            return self._latents.read(row.id, row.bucket, row.index, row.bits, row.lo, row.hi, row.checksum or "")
        except (IntegrityError, NotFoundError):
            # A missing shard reads as Zarr's fill value, a missing bucket as no bucket: with the
            # whole archive gone (renamed, unmounted) that is a StoreError, not damage; a catalog
            # lookup served from the handle's cached partitions no longer touches the store first.
            require_archive(self.loc)
            raise
