"""Scan a PNG source: hash and probe each listed file without decoding pixels.

Listing runs in the driver (`lbdask.representation.sources`: one LIST per prefix); hashing
and probing run as Dask tasks over groups of files so a large source is read in parallel by
the workers.
"""
from __future__ import annotations

import hashlib

from lbdask.errors import InputError
from lbdask.image import pngio
from lbdask.representation.fate import unreadable
from lbdask.representation.sources import SourceItem, read_sources
from lbdask.storage import open_location


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


def scan_group(src_url: str, storage_options: dict, ids: list[str]) -> list[SourceItem]:
    """Dask task: hash and probe a group of source files (`scan-png` in the dashboard)."""
    src = open_location(src_url, storage_options)
    items = []
    for image_id, data in read_sources(src, ids).items():
        if isinstance(data, Exception):
            items.append(SourceItem(image_id, 0, refused=unreadable(data).reason))
        else:
            items.append(describe(image_id, data))
    return items
