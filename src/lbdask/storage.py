"""One filesystem interface for local folders and S3 prefixes, through fsspec/s3fs.

S3 options come from the usual AWS environment variables; an endpoint URL (a local
S3-compatible server, MinIO, ...) is taken from `storage_options["endpoint_url"]`,
`LBDASK_S3_ENDPOINT_URL` or `AWS_ENDPOINT_URL`, in that order.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import fsspec

from lbdask.errors import ConfigError, StoreError


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """Parse a `--storage-options` JSON object (None means no options)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--storage-options is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("--storage-options must be a JSON object")
    return value


def s3_options(storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """s3fs keyword arguments, with the endpoint URL resolved from options or environment."""
    opts = dict(storage_options or {})
    client_kwargs = dict(opts.get("client_kwargs") or {})
    endpoint = (opts.pop("endpoint_url", None) or client_kwargs.get("endpoint_url")  # given options win
                or os.environ.get("LBDASK_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"))
    if endpoint:
        opts["client_kwargs"] = {**client_kwargs, "endpoint_url": endpoint}
    return opts


@dataclass(frozen=True)
class Location:
    """A filesystem plus a root path inside it; `url` is what the user typed."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str

    @property
    def is_remote(self) -> bool:
        return not isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Join `parts` below the root with `/` separators."""
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def storage_options(self) -> dict[str, Any]:
        """Options to recreate this filesystem elsewhere (a Dask worker, zarr)."""
        return dict(self.fs.storage_options)


def open_location(url: str, storage_options: dict[str, Any] | None = None) -> Location:
    """Resolve `url` (a folder or `s3://bucket/prefix`) to a filesystem and root path."""
    if url.startswith("s3://"):
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - s3fs is a hard dependency
            raise StoreError(f"s3fs is needed for {url}: {exc}") from None
        fs = s3fs.S3FileSystem(**s3_options(storage_options))
        return Location(fs, url[len("s3://"):].rstrip("/"), url)
    if "://" in url and not url.startswith("file://"):
        raise StoreError(f"unsupported location {url!r}: use a folder or s3://bucket/prefix")
    fs = fsspec.filesystem("file")
    return Location(fs, os.path.abspath(url.removeprefix("file://")), url)


def canonical_url(url: str) -> str:
    """One spelling per archive, computed without I/O but symlinks: an S3 prefix without
    repeated or trailing slashes, a folder as its absolute path with symlinks resolved
    (`archive`, `./archive/`, `/abs/archive` and `file:///abs/archive` alike)."""
    if url.startswith("s3://"):
        return "s3://" + re.sub("/+", "/", url[len("s3://"):]).strip("/")
    if "://" in url and not url.startswith("file://"):
        return url  # not a location lbdask opens: open_location says so
    return os.path.realpath(url.removeprefix("file://"))
