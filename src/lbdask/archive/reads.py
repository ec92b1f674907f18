"""Single-request reads for the catalog's hot path: one GET per object, one HEAD per probe.

s3fs's `cat_file` asks for the object's size first (a HEAD) when it may split the read, and
its `exists`/`info` LIST the prefix when the key is absent: a probe for the next log slot or
manifest generation would cost a LIST. These helpers ask S3 exactly once.
"""
from __future__ import annotations

import errno

from lbdask.storage import Location


def read_object(loc: Location, path: str) -> bytes:
    """The whole object (one GET); FileNotFoundError naming it when it is absent."""
    if not loc.is_remote:
        return loc.fs.cat_file(path)
    try:
        return loc.fs.cat_file(path, max_concurrency=1)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such object", path) from None


def present(loc: Location, path: str) -> bool:
    """Whether one object exists (one HEAD on S3, never a LIST)."""
    if not loc.is_remote:
        return bool(loc.fs.exists(path))
    bucket, key, _ = loc.fs.split_path(path)
    try:
        loc.fs.call_s3("head_object", Bucket=bucket, Key=key)
    except FileNotFoundError:
        return False
    return True


def size_of(loc: Location, path: str) -> int | None:
    """The size of one object (one HEAD on S3, never a LIST), None when it is absent."""
    if not loc.is_remote:
        try:
            return int(loc.fs.info(path)["size"])
        except FileNotFoundError:
            return None
    bucket, key, _ = loc.fs.split_path(path)
    try:
        return int(loc.fs.call_s3("head_object", Bucket=bucket, Key=key)["ContentLength"])
    except FileNotFoundError:
        return None
