"""What tells an archive from a folder that is not one, and what `Archive.create` may resume.

`Archive.create` writes the root `zarr.json`, the `latents` group and finally the lbdask
attribute; the archive exists once that attribute does. Anything else found in a DEST
without the attribute was not written by an interrupted creation, so DEST is refused
rather than written into.
"""
from __future__ import annotations

import json
from typing import Any

from lbdask.archive.objects import put_atomic
from lbdask.errors import InputError, StoreError
from lbdask.storage import Location

#: Group attribute holding the archive's metadata.
ATTR = "lbdask"

#: What a DEST may hold before `Archive.create` finished: the group objects it writes first
#: and the migration's lease (`lease.py`), taken before the archive is created.
CREATION_OBJECTS = {"zarr.json", "latents", "latents/zarr.json", "lease"}


def root_attributes(loc: Location) -> dict[str, Any] | None:
    """The attributes of DEST's root zarr.json, read as plain JSON (no Zarr import: `lbdask
    ls` starts fast); None when there is no zarr.json, {} when it holds none."""
    try:
        blob = loc.fs.cat_file(loc.path("zarr.json"))
    except FileNotFoundError:
        return None
    try:
        attributes = json.loads(blob).get("attributes")
    except (ValueError, AttributeError):
        return {}
    return attributes if isinstance(attributes, dict) else {}


def set_format_version(loc: Location, version: int) -> None:
    """Rewrite the lbdask attribute's `format_version` in DEST's root zarr.json (one atomic
    write; the rest of the object is kept as it is)."""
    doc = json.loads(loc.fs.cat_file(loc.path("zarr.json")))
    doc["attributes"][ATTR]["format_version"] = version
    put_atomic(loc, loc.path("zarr.json"), json.dumps(doc, indent=2).encode())


def archive_meta(loc: Location) -> dict[str, Any] | None:
    """The lbdask attribute of DEST's root zarr.json, None when there is none (yet)."""
    meta = (root_attributes(loc) or {}).get(ATTR)
    return meta if isinstance(meta, dict) else None


def require_archive(loc: Location) -> None:
    """StoreError unless DEST's root zarr.json still holds the lbdask attribute: an empty catalog
    listing means "no rows" only on an archive that is still there (renamed, deleted, unmounted?)."""
    if archive_meta(loc) is None:
        raise StoreError(f"the archive's zarr.json is gone from {loc.url} (renamed, deleted or not mounted?)")


def require_root(loc: Location) -> None:
    """StoreError when DEST itself (the folder, or any object under the S3 prefix) does not exist."""
    try:
        present = loc.fs.exists(loc.root)
    except FileNotFoundError:  # a bucket that does not exist
        present = False
    if not present:
        raise StoreError(f"{loc.url} does not exist (renamed, deleted or not mounted?)")


def refuse_foreign(loc: Location) -> None:
    """InputError when DEST holds objects an interrupted `Archive.create` cannot have left."""
    loc.fs.invalidate_cache(loc.root)
    try:
        found = loc.fs.find(loc.root, withdirs=True)
    except FileNotFoundError:
        return
    prefix = loc.root.rstrip("/") + "/"
    foreign = sorted(p[len(prefix):] for p in found if p.startswith(prefix) and p[len(prefix):] not in CREATION_OBJECTS
                     and not p[len(prefix):].startswith("lease/"))
    if foreign:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"{loc.url} is not an lbdask archive and is not empty (it holds {listed}): "
                         f"choose an empty or new DEST")

