"""The listing of a PNG source as a stream in id order: what a rerun merge-joins with the
catalog (`Archive.rows()` ascends by id), so that neither side is held in memory (issue 25).

Only regular files inside SRC are read: on a folder, a `*.png` that is a symlink pointing out
of SRC, a fifo or a device is refused at listing time (never opened) and listed with its
reason. A folder walks in no useful order: its entries go through the local external sort
(`archive/spill.py`, a private temporary folder removed when the stream ends). S3 lists every
key below a prefix in key order, a page of `S3_PAGE_KEYS` at a time: streamed as it comes
(the only remote store `open_location` opens).
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec.asyn import sync

from lbdask.archive.spill import SortedRows
from lbdask.errors import StoreError
from lbdask.storage import Location

#: Keys per S3 listing page (the most ListObjectsV2 returns): what the stream holds at a time.
S3_PAGE_KEYS = 1000


@dataclass(frozen=True, slots=True)
class ListedSource:
    """One listed `*.png`: its size and version stamp (`mtime:<ns>` on a folder, `etag:<ETag>`
    on S3: what tells a rerun that a source changed in place), or why it is refused unread."""

    id: str
    size: int = 0
    stamp: str | None = None
    refused: str | None = None


def iter_source_ids(src: Location) -> Iterator[ListedSource]:
    """Every `*.png` below the source root, recursively (the id is the relative path), each
    once, ascending by id. A missing source raises here, before the stream starts."""
    if not src.is_remote:
        if not os.path.isdir(src.root):
            raise StoreError(f"source {src.url} does not exist or is not a folder")
        return _sorted_folder(src)
    if not _call(src, src.fs.exists, src.root):
        raise StoreError(f"source {src.url} does not exist")
    return _s3_keys(src)


def _call(src: Location, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn(...)` with the store's errors as a StoreError naming the source."""
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot list source {src.url}: {exc}") from None


def _sorted_folder(src: Location) -> Iterator[ListedSource]:
    """The folder's entries through the external sort; the spill folder goes with the stream."""
    folder = tempfile.mkdtemp(prefix="lbdask-listing-")
    try:
        yield from SortedRows(folder, _walk_folder(src))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remote_stamp(info: dict) -> str | None:
    """The version of a listed S3 object: its ETag (a content hash) without its quotes, else its
    modification time."""
    if etag := info.get("ETag"):
        return f"etag:{str(etag).strip(chr(34))}"
    mtime = info.get("LastModified")
    return f"mtime:{mtime}" if mtime else None


def _s3_keys(src: Location) -> Iterator[ListedSource]:
    """The `*.png` keys below the root, page by page (ListObjectsV2 without a delimiter returns
    them in key order, i.e. ascending ids); a page out of order is an error, not a wrong answer."""
    bucket, key, _ = src.fs.split_path(src.root)
    prefix = f"{key}/" if key else ""  # open_location strips the root's trailing slashes
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": S3_PAGE_KEYS}
    last: str | None = None
    while True:
        page = _call(src, sync, src.fs.loop, src.fs._call_s3, "list_objects_v2", **kwargs)
        for info in page.get("Contents", []):
            image_id = info["Key"][len(prefix):]
            if last is not None and image_id <= last:
                raise StoreError(f"cannot list source {src.url}: keys out of order ({last!r}, then {image_id!r})")
            last = image_id
            if image_id.lower().endswith(".png"):
                yield ListedSource(image_id, int(info.get("Size") or 0), remote_stamp(info))
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _fail_listing(exc: OSError) -> None:
    raise StoreError(f"cannot list source folder {exc.filename}: {exc.strerror or exc}")


def _walk_folder(src: Location) -> Iterator[ListedSource]:
    """A folder walked without following links, in no useful order; each `*.png` is checked with lstat."""
    real_root = os.path.realpath(src.root)
    for dirpath, dirnames, filenames in os.walk(src.root, onerror=_fail_listing):
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            if not name.lower().endswith(".png") or (name in dirnames and not os.path.islink(path)):
                continue
            image_id = os.path.relpath(path, src.root).replace(os.sep, "/")
            st, reason = _regular_inside(path, real_root)
            if st is not None:
                yield ListedSource(image_id, st.st_size, f"mtime:{st.st_mtime_ns}")
            else:
                yield ListedSource(image_id, refused=reason)


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
