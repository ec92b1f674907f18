"""Whole-object writes that are atomic and durable on a folder and S3, and store error mapping.

On S3 one PUT makes an object visible all at once. On a folder the bytes go to a temporary
file in the same directory, are fsynced, renamed (or hard-linked, for an exclusive create)
onto the final name and the directory is fsynced, as SQLite and LevelDB do: a write that
returned survives a power loss whole, and a torn write is never visible under the name.
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from lbdask.errors import LbdaskError, StoreError
from lbdask.storage import Location

T = TypeVar("T")
#: In-process reads (`Archive.open`, `ArchiveReader.row`) try an unreachable store this often,
#: waiting STORE_BACKOFF_S * k before try k + 1 (0.1 s, then 0.2 s): docs/archive-format.md.
STORE_ATTEMPTS = 3
STORE_BACKOFF_S = 0.1
#: HTTP status S3 answers a conditional PUT whose condition failed (the object exists).
PRECONDITION_FAILED = 412
#: `put_streamed` on S3 uploads a spool file larger than twice this in parts of this size
#: (s3fs reads one part, or a smaller file whole, into memory).
UPLOAD_PART_BYTES = 8 << 20


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)  # "": the dirname of a relative name
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: str) -> None:
    """`os.makedirs`, with each new directory's entry fsynced into its parent."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it first
            os.mkdir(new)
        _fsync_dir(os.path.dirname(new))


def _durable_temp(path: str, data: bytes | memoryview) -> str:
    """Write `data` beside `path` under a unique temporary name, flushed to the disk."""
    _make_dirs(os.path.dirname(path))
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def replace_durably(path: str, data: bytes | memoryview) -> None:
    """A local file replaced by `data` all at once: fsync, rename, fsync of the directory."""
    tmp = _durable_temp(path, data)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def create_durably(path: str, data: bytes | memoryview) -> bool:
    """A local file created with `data` only if the name is free (hard link); False if taken."""
    tmp = _durable_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    _fsync_dir(os.path.dirname(path))
    return True


def put_atomic(loc: Location, path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or all of it, durably."""
    if loc.is_remote:
        loc.fs.pipe_file(path, data)
    else:
        replace_durably(path, data)


@contextlib.contextmanager
def put_streamed(loc: Location, path: str) -> Iterator[BinaryIO]:
    """`put_atomic` for an object too large to hold in memory: the caller writes its bytes
    into the yielded file; when the block ends without an exception the object appears under
    `path` whole and durably (a folder: fsync, rename, fsync of the directory; S3: the spooled
    file uploaded in one PUT, or a multipart upload completed in one step), else never."""
    if loc.is_remote:
        fd, tmp = tempfile.mkstemp(prefix="lbdask-put-")
    else:
        _make_dirs(os.path.dirname(path))
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            if not loc.is_remote:  # S3: the upload is durable when it returns
                os.fsync(f.fileno())
        if loc.is_remote:
            loc.fs.put_file(tmp, path, chunksize=UPLOAD_PART_BYTES)
        else:
            os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def put_exclusive(loc: Location, path: str, data: bytes) -> bool:
    """Create `path` with `data` only if it does not exist yet; False if it already did.

    The compare-and-swap of the catalog: on a folder a hard link, which fails when the
    name exists; on S3 a PUT with `If-None-Match: *` (refused with 412 when it exists).
    """
    if loc.is_remote:
        return _s3_put_if_absent(loc, path, data)
    return create_durably(path, data)


def _s3_put_if_absent(loc: Location, path: str, data: bytes) -> bool:
    bucket, key, _ = loc.fs.split_path(path)
    loc.fs.invalidate_cache(path)
    try:
        loc.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except Exception as exc:  # noqa: BLE001 - s3fs translates botocore errors to many types
        if _status(exc) == PRECONDITION_FAILED:
            return False
        raise
    return True


def _status(exc: BaseException) -> int | None:
    """HTTP status of a botocore error, also when s3fs wrapped it (as __cause__)."""
    while exc is not None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        exc = exc.__cause__ or exc.__context__
    return None


def remove_quietly(loc: Location, paths: Iterable[str]) -> None:
    """Delete objects; those already gone (another compactor was first) are fine."""
    paths = list(paths)
    if not paths:
        return
    if loc.is_remote:
        with contextlib.suppress(FileNotFoundError):
            loc.fs.rm(paths)
            return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            loc.fs.rm_file(path)


@functools.cache
def store_exceptions() -> tuple[type[BaseException], ...]:
    """What a store raises when it cannot be used: the OS's errors (a folder; also refused
    connections and timeouts, fsspec's FSTimeoutError included) and those of s3fs's HTTP stack,
    which s3fs passes on untranslated after its own retries. Imported at the first failure: a
    local archive never loads them."""
    import http.client

    import aiohttp
    import botocore.exceptions
    import botocore.parsers

    return (OSError, http.client.HTTPException, aiohttp.ClientError,
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, botocore.parsers.ResponseParserError)


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Turn failures to reach the store into a one-line StoreError; any other exception (a bug:
    TypeError, ValueError, ...) and FileNotFoundError, which callers handle, pass unchanged."""
    try:
        yield
    except (LbdaskError, FileNotFoundError):
        raise
    except Exception as exc:
        if not isinstance(exc, store_exceptions()):
            raise
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise StoreError(f"cannot use archive store {url}: {type(exc).__name__}: {text}") from None


def store_retries(fn: Callable[[], T], url: str, attempts: int = STORE_ATTEMPTS) -> T:
    """`fn()`, tried again on StoreError up to `attempts` times in all (linear backoff): a
    store that is down for a moment is not reported, one that stays down is, as one StoreError."""
    for attempt in range(1, attempts):
        try:
            return fn()
        except StoreError:
            time.sleep(attempt * STORE_BACKOFF_S)
    try:
        return fn()
    except StoreError as exc:
        if attempts == 1:  # one attempt: the caller counts the attempts (serving)
            raise exc from None
        raise StoreError(f"archive {url} unreachable after {attempts} attempts: {exc}") from None
