"""The PNG source both jobs read: its listing held whole (ids, sizes, version stamps; entries
refused without being opened; streamed in id order by `listing.iter_source_ids`), one source
image as the scan saw it (`SourceItem`) and fetching bytes. The migration scans and plans from
here; re-tiering lists a source for its clean-up.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from lbdask.errors import StoreError
from lbdask.representation.listing import iter_source_ids
from lbdask.storage import Location


@dataclass(frozen=True)
class SourceItem:
    """One source PNG as the scan saw it; `error` is set when it cannot be probed."""

    id: str
    size: int
    sha256: str | None = None
    width: int = 0
    height: int = 0
    mode: str | None = None
    bit_depth: int = 0
    has_alpha: bool = False
    error: str | None = None
    animated: bool = False  # an APNG: a latent would keep only its first frame
    refused: str | None = None  # why the file is not read at all (not a regular file inside SRC)
    stamp: str | None = None  # the listing's version of the file (`ListedSource.stamp`)

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass
class SourceListing:
    """The `*.png` ids below SRC: regular files (id -> size), refused entries (id -> reason)
    and each file's version stamp (id -> `mtime:<ns>` on a folder, `etag:<ETag>` on S3):
    what tells a rerun that a source changed in place with the same size."""

    sizes: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, str] = field(default_factory=dict)


def with_stamps(items: list[SourceItem], stamps: Mapping[str, str | None]) -> list[SourceItem]:
    """`items` (scanned on the workers) with the stamps the driver's listing saw (id -> stamp)."""
    return [replace(i, stamp=stamps[i.id]) if i.id in stamps else i for i in items]


def list_source_ids(src: Location) -> SourceListing:
    """Every `*.png` below the source root, recursively (the id is the relative path), held in
    memory: for a caller that needs them all at once (a rerun streams `iter_source_ids`)."""
    listing = SourceListing()
    for entry in iter_source_ids(src):
        if entry.refused is not None:
            listing.refused[entry.id] = entry.refused
            continue
        listing.sizes[entry.id] = entry.size
        if entry.stamp is not None:
            listing.stamps[entry.id] = entry.stamp
    return listing


def source_path(src: Location, image_id: str) -> str:
    """Path of an id inside the source filesystem."""
    return src.path(image_id)


def read_sources(src: Location, ids: list[str]) -> dict[str, bytes | Exception]:
    """Fetch the bytes of several ids at once (concurrent GETs on S3); errors per id."""
    paths = [source_path(src, i) for i in ids]
    fetched = src.fs.cat(paths, on_error="return") if paths else {}
    if not isinstance(fetched, dict):  # a single path comes back as bytes
        fetched = {paths[0]: fetched}
    return {i: fetched.get(p, StoreError(f"cannot read {p}")) for i, p in zip(ids, paths)}
