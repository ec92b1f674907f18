"""Count the store requests made through a Location, so tests can assert "no LIST" and
"bounded requests whatever N" without timing anything.

On a folder every fsspec call through `loc.fs` counts as one request (by method name), and
so do lbdask's own durable writes (`objects.replace_durably` / `create_durably`, which go
to the OS, not fsspec). On S3 every HTTP request s3fs sends counts (botocore's
`before-send` event: retries included), named by S3 operation: `list_objects_v2` is a LIST.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from lbdask.archive import objects
from lbdask.storage import Location

#: Operations that enumerate a prefix (what a lookup must never do).
LISTS = frozenset({"ls", "find", "walk", "glob", "du", "list_objects_v2", "list_objects"})
#: fsspec methods that touch the store (a folder's requests).
FS_METHODS = frozenset({"cat_file", "cat", "info", "exists", "isfile", "isdir", "ls", "find", "walk", "glob",
                        "du", "open", "pipe_file", "put_file", "rm", "rm_file", "mv", "size"})


class Requests:
    """Requests seen so far, by operation name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def lists(self) -> int:
        return sum(n for op, n in self.calls.items() if op in LISTS)

    def reset(self) -> None:
        self.calls.clear()


class _CountingFs:
    """A proxy of a local filesystem counting the calls of FS_METHODS."""

    def __init__(self, fs, seen: Requests) -> None:
        self._fs, self._seen = fs, seen

    def __getattr__(self, name):
        attr = getattr(self._fs, name)
        if name not in FS_METHODS:
            return attr

        def counted(*args, **kwargs):
            self._seen.calls[name] += 1
            return attr(*args, **kwargs)

        return counted

    @property
    def __class__(self):  # Location.is_remote tells a folder by isinstance(fs, LocalFileSystem)
        return type(self._fs)


def _operation(request) -> str:
    """S3 operation of a prepared HTTP request: the method and, for a bucket GET, a LIST."""
    url, method = request.url, request.method
    path = url.split("://", 1)[-1].split("?", 1)[0]
    has_key = path.count("/") >= 2 and not path.endswith("/")
    if method == "GET":
        return "get_object" if has_key else "list_objects_v2"
    return {"HEAD": "head_object", "PUT": "put_object", "DELETE": "delete_object",
            "POST": "delete_objects" if "delete" in url else "post"}.get(method, method.lower())


@contextlib.contextmanager
def counting(loc: Location) -> Iterator[Requests]:
    """Count the requests made through `loc` (and Locations sharing its filesystem) meanwhile."""
    seen = Requests()
    if loc.is_remote:
        client = loc.fs.s3 if getattr(loc.fs, "_s3", None) else None
        if client is None:
            loc.fs.connect()
            client = loc.fs.s3

        def count(request, **_):
            seen.calls[_operation(request)] += 1

        client.meta.events.register("before-send.s3", count)
        try:
            yield seen
        finally:
            client.meta.events.unregister("before-send.s3", count)
        return
    real_fs, real_replace, real_create = loc.fs, objects.replace_durably, objects.create_durably

    def replace(*args, **kwargs):
        seen.calls["put_atomic"] += 1
        return real_replace(*args, **kwargs)

    def create(*args, **kwargs):
        seen.calls["put_exclusive"] += 1
        return real_create(*args, **kwargs)

    object.__setattr__(loc, "fs", _CountingFs(real_fs, seen))
    objects.replace_durably, objects.create_durably = replace, create
    try:
        yield seen
    finally:
        object.__setattr__(loc, "fs", real_fs)
        objects.replace_durably, objects.create_durably = real_replace, real_create



#: Folders a du of an archive lists whole (each grows with the archive).
WHOLE_ARCHIVE = ("latents", "originals", "catalog", "meta", "pixels", "catalog/folded", "catalog/log")


@contextlib.contextmanager
def local_listings() -> Iterator[list[str]]:
    """Every listing (`du`, `find`, `walk`, `ls`) of a LocalFileSystem in this process meanwhile
    (the workers of an in-process cluster included), as "<method> <path>"."""
    from fsspec.implementations.local import LocalFileSystem

    seen: list[str] = []
    real = {name: getattr(LocalFileSystem, name) for name in ("du", "find", "walk", "ls")}

    def wrap(name):
        def counted(self, path, *args, **kwargs):
            seen.append(f"{name} {str(path).rstrip('/')}")
            return real[name](self, path, *args, **kwargs)
        return counted

    for name in real:
        setattr(LocalFileSystem, name, wrap(name))
    try:
        yield seen
    finally:
        for name, method in real.items():
            setattr(LocalFileSystem, name, method)


def whole_archive(seen: list[str], root: str) -> list[str]:
    """The listings in `seen` that enumerate a part of the archive at `root` whole: a `du`,
    `find` or `walk` of a WHOLE_ARCHIVE folder (an `ls` of a fan-out folder lists its
    subfolders only)."""
    flagged = {f"{verb} {root}/{folder}" for folder in WHOLE_ARCHIVE for verb in ("du", "find", "walk")}
    return [entry for entry in seen if entry in flagged]
