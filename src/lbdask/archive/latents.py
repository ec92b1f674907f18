"""The archive's latent buckets: sharded Zarr v3 arrays of pcodec-compressed latents.

The only part of an archive that needs Zarr (and numpy, numcodecs): `Archive` imports this
module the first time a latent is read or written, so listing an archive or reading a kept
image never pays for `import zarr` (issue 18, `benchmarks/cli_startup.py`). On a folder the
Zarr store is `DurableLocalStore`: every shard is fsynced before the catalog commit that
references it.
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
import zarr.storage
from zarr.codecs import PCodec

from lbdask.archive.durable_store import DurableLocalStore
from lbdask.archive.objects import store_errors
from lbdask.errors import ArchiveFormatError, InputError, IntegrityError, NotFoundError
from lbdask.latent.codec import PCODEC_LEVEL, SUPPORTED_BITS, EncodedLatent
from lbdask.storage import Location, s3_options

#: Length of a bucket's first axis: effectively unbounded, only written shards exist.
MAX_LATENTS_PER_BUCKET = 2**40

# pcodec is a numcodecs codec, outside the Zarr v3 spec: zarr warns each time one is built,
# on every array open in every worker. We chose it knowingly (docs/archive-format.md).
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")


def zarr_store(loc: Location, storage_options: dict[str, Any] | None, read_only: bool) -> zarr.abc.store.Store:
    """The Zarr store of an archive: fsspec on S3, a fsyncing local store on a folder."""
    if loc.is_remote:
        return zarr.storage.FsspecStore.from_url(loc.url, storage_options=s3_options(storage_options), read_only=read_only)
    return DurableLocalStore(loc.root, read_only=read_only)


def create_group(loc: Location, storage_options: dict[str, Any] | None, attr: str, meta: dict[str, Any]) -> None:
    """Write the root group, its `latents` group and, last, the archive attribute (resumable)."""
    group = zarr.open_group(zarr_store(loc, storage_options, read_only=False), mode="a", zarr_format=3)
    group.require_group("latents")
    group.update_attributes({attr: meta})  # written last: the archive exists once this does


class LatentBuckets:
    """Bucket arrays of one archive, opened on first use and cached (one per process)."""

    def __init__(self, loc: Location, storage_options: dict[str, Any] | None, mode: str, shard_size: int) -> None:
        self.loc, self.url, self.mode, self.shard_size = loc, loc.url, mode, shard_size
        self.store = zarr_store(loc, storage_options, read_only=(mode == "r"))
        self._arrays: dict[str, zarr.Array] = {}
        self._alloc_lock = threading.Lock()
        self._listed: set[str] = set()  # buckets whose shard objects this process has listed

    def ensure(self, name: str, bits: int, c: int, h: int, w: int) -> None:
        """Create the bucket array if missing (driver only; idempotent)."""
        if bits not in SUPPORTED_BITS:
            raise InputError(f"latent precision must be one of {SUPPORTED_BITS} bits, got {bits}")
        if name in self._arrays:
            return
        path = f"latents/{name}"
        with store_errors(self.url):
            try:
                arr = zarr.open_array(self.store, path=path, mode="r+", zarr_format=3)
            except (FileNotFoundError, zarr.errors.NodeNotFoundError):
                arr = zarr.create_array(
                    self.store, name=path,
                    shape=(MAX_LATENTS_PER_BUCKET, c, h, w), chunks=(1, c, h, w), shards=(self.shard_size, c, h, w),
                    dtype=np.float16 if bits == 16 else np.uint16, fill_value=0,
                    serializer=PCodec(level=PCODEC_LEVEL), compressors=None, filters=None,
                    attributes={"bits": bits, "next_shard": 0}, dimension_names=("latent", "channel", "y", "x"))
        if arr.shape[1:] != (c, h, w) or arr.attrs.get("bits") != bits:
            raise ArchiveFormatError(f"bucket {name} holds {arr.attrs.get('bits')}-bit {arr.shape[1:]} latents, "
                                     f"not {bits}-bit {(c, h, w)}")
        self._arrays[name] = arr

    def array(self, bucket: str) -> zarr.Array:
        if bucket not in self._arrays:
            with store_errors(self.url):
                try:
                    self._arrays[bucket] = zarr.open_array(self.store, path=f"latents/{bucket}", zarr_format=3,
                                                           mode="r" if self.mode == "r" else "r+")
                except (FileNotFoundError, zarr.errors.NodeNotFoundError):
                    raise NotFoundError(f"no latent bucket {bucket!r} in archive {self.url}") from None
        return self._arrays[bucket]

    def _shards_on_store(self, bucket: str) -> list[int]:
        d = self.loc.path("latents", bucket, "c")
        self.loc.fs.invalidate_cache(d)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.loc.fs.ls(d, detail=False)]
        except FileNotFoundError:
            return []
        return [int(n) for n in names if n.isdigit()]

    def allocate(self, bucket: str, n: int) -> int:
        """First of `n` fresh shard numbers (driver only): never one allocated or present before."""
        if n < 1:
            raise InputError(f"allocate at least one shard, got {n}")
        with self._alloc_lock, store_errors(self.url):
            arr = self.array(bucket)
            arr = zarr.open_array(arr.store, path=arr.path, mode="r+", zarr_format=3)  # fresh attributes
            first = int(arr.attrs.get("next_shard", 0))
            if bucket not in self._listed:  # one LIST per bucket and process: orphans of earlier runs
                first = max(first, max(self._shards_on_store(bucket), default=-1) + 1)
                self._listed.add(bucket)
            self._arrays[bucket] = arr.update_attributes({"next_shard": first + n})  # recorded before use
        return first

    def write(self, bucket: str, shard: int, encoded: Sequence[EncodedLatent]) -> list[int]:
        """Write up to `shard_size` latents into shard `shard`; returns their bucket indices."""
        if not 0 < len(encoded) <= self.shard_size:
            raise InputError(f"a shard holds 1 to {self.shard_size} latents, got {len(encoded)}")
        arr = self.array(bucket)
        bits = arr.attrs.get("bits")
        for enc in encoded:
            if enc.bits != bits or enc.data.shape != arr.shape[1:]:
                raise InputError(f"latent {enc.bits}-bit {enc.data.shape} does not fit bucket {bucket}")
        start = shard * self.shard_size
        with store_errors(self.url):
            arr[start:start + len(encoded)] = np.stack([e.data for e in encoded]).astype(arr.dtype)
        return list(range(start, start + len(encoded)))

    def read(self, image_id: str, bucket: str, index: int, bits: int, lo: Any, hi: Any, checksum: str) -> EncodedLatent:
        """One stored latent, checksum verified (IntegrityError naming `image_id`)."""
        arr = self.array(bucket)
        with store_errors(self.url):
            try:
                data = arr[index]
            except (RuntimeError, ValueError) as exc:  # pcodec or shard-index decoding: a corrupt shard
                raise IntegrityError(f"image {image_id!r} in {self.url}: latent shard of bucket {bucket} "
                                     f"does not decode ({type(exc).__name__}: {str(exc)[:80]})") from None
        enc = EncodedLatent(np.asarray(data), bits, lo, hi, checksum)
        try:
            enc.verify()
        except IntegrityError as exc:
            raise IntegrityError(f"image {image_id!r} in {self.url}: {exc}") from None
        return enc
