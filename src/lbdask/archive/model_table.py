"""The archive's table of models: every latent model its rows may have been written by.

The first model is the one the archive was created with (its `lbdask` attribute, which
migration checks). A later model - the target of a `lbdask retier` re-encode - is one
object `models/<fingerprint>.json`, written atomically before any latent of it is, so
registering is crash-safe and idempotent and never rewrites the archive's attributes.
Latents of such a model live in buckets named after its fingerprint, so bucket names of
two models never collide.
"""
from __future__ import annotations

import json
from typing import Any

from lbdask.archive.objects import put_atomic, store_errors
from lbdask.archive.store import Archive
from lbdask.errors import ConfigError, IntegrityError, ModelMismatchError

FOLDER = "models"
#: Fields an entry must have (a model's `model_info` has them all).
FIELDS = ("name", "fingerprint", "latent_channels", "downsample", "config")


def _entries_on_store(arc: Archive) -> list[dict[str, Any]]:
    paths = arc.json_paths(FOLDER)
    with store_errors(arc.url):
        out = []
        for path in paths:
            try:
                entry = json.loads(arc.loc.fs.cat_file(path))
            except ValueError:
                raise IntegrityError(f"model table entry {path} in {arc.url} is not JSON") from None
            out.append(entry)
        return out


def model_table(arc: Archive) -> list[dict[str, Any]]:
    """Every registered model, the archive's own (creation) model first."""
    first = arc.model_info
    return [first] + [e for e in _entries_on_store(arc) if e.get("fingerprint") != first.get("fingerprint")]


def find_model(arc: Archive, fingerprint: str) -> dict[str, Any] | None:
    """The table entry of `fingerprint`, or None when the archive does not register it."""
    if fingerprint == arc.model_info.get("fingerprint"):
        return arc.model_info
    return next((e for e in _entries_on_store(arc) if e.get("fingerprint") == fingerprint), None)


def resolve_reference(arc: Archive, ref: str) -> dict[str, Any]:
    """The entry a policy names by fingerprint (or a prefix of at least 12 hex digits) or by
    model name; ConfigError when none or several match."""
    table = model_table(arc)
    hits = [e for e in table if e.get("name") == ref or (len(ref) >= 12 and str(e.get("fingerprint", "")).startswith(ref))]
    if len(hits) != 1:
        names = ", ".join(f"{e.get('name')} ({str(e.get('fingerprint'))[:12]})" for e in table)
        what = "no model" if not hits else "several models"
        raise ConfigError(f"reencode.from {ref!r}: {what} of archive {arc.url} match (it has {names})")
    return hits[0]


def register_model(arc: Archive, info: dict[str, Any], load: dict[str, Any]) -> dict[str, Any]:
    """Record model `info` (a `model_info`) in the table, with `load`: how a reader loads it
    again (`{"model": name or folder, "weights": folder or None}`). Idempotent: an entry
    already there is kept as it is. Returns the entry."""
    missing = [f for f in FIELDS if f not in info]
    if missing:
        raise ConfigError(f"model info lacks {', '.join(missing)}")
    known = find_model(arc, info["fingerprint"])
    if known is not None:
        return known
    entry = {f: info[f] for f in FIELDS} | {"load": dict(load)}
    with store_errors(arc.url):
        put_atomic(arc.loc, arc.loc.path(FOLDER, f"{info['fingerprint']}.json"), json.dumps(entry, indent=1).encode())
    return entry


def bucket_for(arc: Archive, fingerprint: str | None, bits: int, c: int, h: int, w: int) -> str:
    """The bucket of latents of model `fingerprint`: the archive's own model keeps the plain
    names (`b8-c32-4x4`), another model's names carry its fingerprint (`m<16 hex>-b8-...`)."""
    name = Archive.bucket_name(bits, c, h, w)
    if fingerprint is None or fingerprint == arc.model_info.get("fingerprint"):
        return name
    return f"m{fingerprint[:16]}-{name}"


def describe(entry: dict[str, Any] | None, fingerprint: str) -> str:
    """`NAME (fingerprint 12)` for messages."""
    return f"{entry.get('name')} ({fingerprint[:12]})" if entry else f"unregistered model {fingerprint[:12]}"


def require_model(arc: Archive, fingerprint: str) -> dict[str, Any]:
    """The entry of `fingerprint`; ModelMismatchError naming it when the archive does not register it."""
    entry = find_model(arc, fingerprint)
    if entry is None:
        known = ", ".join(describe(e, str(e.get("fingerprint"))) for e in model_table(arc))
        raise ModelMismatchError(f"archive {arc.url} has rows of model {fingerprint[:12]}, which its model table "
                                 f"lacks (it has {known})")
    return entry
