"""The PNG source both jobs read: its listing (ids, sizes, version stamps; entries refused
without being opened), one source image as the scan saw it (`SourceItem`) and fetching bytes.

Only regular files inside SRC are read: on a folder, a `*.png` that is a symlink pointing out
of SRC, a fifo or a device is refused at listing time (never opened) and recorded with its
reason. The migration scans and plans from here; re-tiering lists a source for its clean-up.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from lbdask.errors import StoreError
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
    stamp: str | None = None  # the listing's version of the file (`SourceListing.stamps`)

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


def remote_stamp(info: dict) -> str | None:
    """The version of a listed object: its ETag (a content hash on S3), else its modification time."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    mtime = info.get("LastModified") or info.get("mtime")
    return f"mtime:{mtime}" if mtime else None


def with_stamps(items: list[SourceItem], listing: SourceListing) -> list[SourceItem]:
    """`items` (scanned on the workers) with the stamps the driver's listing saw."""
    return [replace(i, stamp=listing.stamps.get(i.id)) if i.id in listing.stamps else i for i in items]


def list_source_ids(src: Location) -> SourceListing:
    """Every `*.png` below the source root, recursively (the id is the relative path)."""
    if not src.is_remote:
        return _list_folder(src)
    try:
        found = src.fs.find(src.root, detail=True)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot list source {src.url}: {exc}") from None
    if not found and not src.fs.exists(src.root):
        raise StoreError(f"source {src.url} does not exist")
    prefix = src.root.rstrip("/") + "/"
    listing = SourceListing()
    for path, info in sorted(found.items()):
        if info.get("type") == "file" and path.lower().endswith(".png") and path.startswith(prefix):
            listing.sizes[path[len(prefix):]] = int(info.get("size") or 0)
            stamp = remote_stamp(info)
            if stamp:
                listing.stamps[path[len(prefix):]] = stamp
    return listing


def _fail_listing(exc: OSError) -> None:
    raise StoreError(f"cannot list source folder {exc.filename}: {exc.strerror or exc}")


def _list_folder(src: Location) -> SourceListing:
    """A folder walked without following links; each `*.png` is checked with lstat."""
    if not os.path.isdir(src.root):
        raise StoreError(f"source {src.url} does not exist or is not a folder")
    real_root = os.path.realpath(src.root)
    listing = SourceListing()
    for dirpath, dirnames, filenames in os.walk(src.root, onerror=_fail_listing):
        for name in sorted([*filenames, *dirnames]):
            path = os.path.join(dirpath, name)
            if not name.lower().endswith(".png") or (name in dirnames and not os.path.islink(path)):
                continue
            image_id = os.path.relpath(path, src.root).replace(os.sep, "/")
            st, reason = _regular_inside(path, real_root)
            if st is not None:
                listing.sizes[image_id] = st.st_size
                listing.stamps[image_id] = f"mtime:{st.st_mtime_ns}"
            else:
                listing.refused[image_id] = reason
    listing.sizes = dict(sorted(listing.sizes.items()))
    listing.refused = dict(sorted(listing.refused.items()))
    listing.stamps = dict(sorted(listing.stamps.items()))
    return listing


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _regular_inside(path: str, real_root: str) -> tuple[os.stat_result | None, str | None]:
    """(stat, None) for a regular file inside SRC (directly or by a symlink that stays
    inside: the target's stat); (None, reason) for anything else, without opening it."""
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return st, None
    if not stat.S_ISLNK(st.st_mode):
        return None, f"not a regular file: {_kind(st.st_mode)}"
    target = os.path.realpath(path)
    if os.path.commonpath([target, real_root]) != real_root:
        return None, f"symlink pointing outside SRC (to {target})"
    try:
        st = os.stat(target)
    except OSError:
        return None, "broken symlink"
    if not stat.S_ISREG(st.st_mode):
        return None, f"symlink to {_kind(st.st_mode)}"
    return st, None


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
