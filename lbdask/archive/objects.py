"""Whole-object writes that are atomic on both a folder and S3, and store error mapping.

On S3 one PUT makes an object visible all at once; on a folder the bytes go to a
temporary file in the same directory that is then renamed over the final name.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from ..errors import LbdaskError, StoreError
from ..storage import Location


def put_atomic(loc: Location, path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or all of it."""
    if loc.is_remote:
        loc.fs.pipe_file(path, data)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Turn failures to reach the store into a one-line StoreError."""
    try:
        yield
    except (LbdaskError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - s3fs/botocore/aiohttp raise many unrelated types
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise StoreError(f"cannot use archive store {url}: {type(exc).__name__}: {text}") from None
