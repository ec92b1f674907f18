"""Scan a PNG source: list ids, then hash and probe each file without decoding pixels.

Listing runs in the driver (one LIST per prefix); hashing and probing run as Dask tasks
over groups of files so a large source is read in parallel by the workers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lbdask import pngio
from lbdask.errors import InputError, StoreError
from lbdask.storage import Location, open_location


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


    @property
    def pixels(self) -> int:
        return self.width * self.height


def list_source_ids(src: Location) -> dict[str, int]:
    """Every `*.png` below the source root, recursively: id (relative path) -> size in bytes."""
    try:
        found = src.fs.find(src.root, detail=True)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot list source {src.url}: {exc}") from None
    if not found and not src.fs.exists(src.root):
        raise StoreError(f"source {src.url} does not exist")
    prefix = src.root.rstrip("/") + "/"
    out = {}
    for path, info in found.items():
        if info.get("type") == "file" and path.lower().endswith(".png") and path.startswith(prefix):
            out[path[len(prefix):]] = int(info.get("size") or 0)
    return dict(sorted(out.items()))


def source_path(src: Location, image_id: str) -> str:
    """Path of an id inside the source filesystem."""
    return src.path(image_id)


def is_animated(data: bytes) -> bool:
    """True for an animated PNG: an `acTL` chunk, which must come before the first IDAT."""
    for ctype, _ in pngio.iter_chunks(data):
        if ctype == "acTL":
            return True
        if ctype == "IDAT":
            return False
    return False


def describe(image_id: str, data: bytes) -> SourceItem:
    """Hash and probe one file's bytes; a probe failure becomes `error`, not an exception."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        info = pngio.probe(data)
    except InputError as exc:
        return SourceItem(image_id, len(data), digest, error=str(exc))
    return SourceItem(
        image_id, len(data), digest, info.width, info.height, info.mode, info.bit_depth, info.has_alpha,
        animated=is_animated(data),
    )


def read_sources(src: Location, ids: list[str]) -> dict[str, bytes | Exception]:
    """Fetch the bytes of several ids at once (concurrent GETs on S3); errors per id."""
    paths = [source_path(src, i) for i in ids]
    fetched = src.fs.cat(paths, on_error="return") if paths else {}
    if not isinstance(fetched, dict):  # a single path comes back as bytes
        fetched = {paths[0]: fetched}
    return {i: fetched.get(p, StoreError(f"cannot read {p}")) for i, p in zip(ids, paths)}


def scan_group(src_url: str, storage_options: dict, ids: list[str]) -> list[SourceItem]:
    """Dask task: hash and probe a group of source files (`scan-png` in the dashboard)."""
    src = open_location(src_url, storage_options)
    items = []
    for image_id, data in read_sources(src, ids).items():
        if isinstance(data, Exception):
            items.append(SourceItem(image_id, 0, error=f"unreadable: {data}"))
        else:
            items.append(describe(image_id, data))
    return items
