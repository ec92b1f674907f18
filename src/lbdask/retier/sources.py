"""Source clean-up: migrated source PNGs -> a quarantine prefix -> deleted after retention.

A source is moved only when the archive's copy reads back with its checksum and the
source's bytes still hash to what was migrated; the quarantine copy is written and read
back before the source is removed. Quarantined files lie under `<quarantine>/<YYYYMMDD>/<id>`
(the day of the run): a run deletes a day folder's files only after `retention_days` and
only when the policy says `delete_after_retention: true`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re

from lbdask.archive import Archive
from lbdask.archive.objects import put_atomic, remove_quietly
from lbdask.retier.moves import Chunk, ChunkResult, MoveContext, check_copy
from lbdask.storage import Location, open_location

DAY_FOLDER = re.compile(r"^\d{8}$")


def quarantined(loc: Location) -> list[tuple[str, float]]:
    """(path relative to the quarantine root, quarantined-at in epoch seconds) of every file there."""
    loc.fs.invalidate_cache(loc.root)
    try:
        found = loc.fs.find(loc.root)
    except FileNotFoundError:
        return []
    prefix = loc.root.rstrip("/") + "/"
    out = []
    for path in found:
        rel = path[len(prefix):] if path.startswith(prefix) else path
        day = rel.split("/", 1)[0]
        if DAY_FOLDER.match(day) and "/" in rel and ".tmp-" not in rel:
            since = dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.timezone.utc).timestamp()
            out.append((rel, since))
    return sorted(out)


def quarantine(arc: Archive, chunk: Chunk, ctx: MoveContext, res: ChunkResult, options: dict | None) -> None:
    """Move each source of `chunk` into the quarantine day folder (no catalog change)."""
    src = open_location(ctx.source, options)
    dst = open_location(ctx.quarantine, options)
    for image_id in chunk.ids:
        row = arc.get_row(image_id)
        if row is None:
            res.skip("not in the catalog")
            continue
        path = src.path(image_id)
        try:
            data = src.fs.cat_file(path)
        except FileNotFoundError:
            res.skip("source gone")
            continue
        if hashlib.sha256(data).hexdigest() != row.source_sha256:
            res.skip("source changed since migration")
            continue
        check_copy(arc, row)  # the archive's copy reads back and matches its checksum
        target = dst.path(ctx.day, image_id)
        put_atomic(dst, target, data)
        dst.fs.invalidate_cache(target)
        if dst.fs.cat_file(target) != data:
            raise OSError(f"quarantine copy {target} differs from the source as written")
        src.fs.rm_file(path)
        res.moved += 1
        res.source_bytes += len(data)


def purge(chunk: Chunk, ctx: MoveContext, res: ChunkResult, options: dict | None) -> None:
    """Delete quarantined files past retention (planned only when the policy allows it)."""
    dst = open_location(ctx.quarantine, options)
    remove_quietly(dst, [dst.path(rel) for rel in chunk.ids])
    res.moved += len(chunk.ids)
