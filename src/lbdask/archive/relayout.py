"""Move a version 2 archive's flat commit log and folded copies into the fan-out layout (version 3).

In the flat layout `catalog/log/` gains one slot and `catalog/folded/` one copy per batch,
for good. `lbdask upgrade` (under the archive's lease, so no migration writes meanwhile)
calls `fan_out` after a compaction folded every slot. Each step is safe to kill, and a rerun
finishes the job: (1) copy each flat folded copy to `catalog/folded/<fan>/` (version 2
readers ignore the copies; `folded_names` counts a batch once); (2) claim a fence of the
current generation at the manifest's `log_next` in the fan-out log (readers pass it over),
so that `repair` finds where the fanned log starts when the manifest is lost; (3) record
format version 3: from here on every handle opened uses the fan-out paths; (4) delete the
flat copies and the flat slots, which nothing reads any more. See docs/archive-format.md "Store layout".
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lbdask.archive.catalog import BATCH_SUFFIX, Catalog
from lbdask.archive.commit_log import SLOT_NAME, Slot, claim, slot_path
from lbdask.archive.objects import put_atomic, remove_quietly
from lbdask.archive.reads import present

if TYPE_CHECKING:
    from lbdask.archive.store import Archive


def _flat(arc: Archive, folder: str, suffix: str) -> list[str]:
    """The objects directly under `catalog/<folder>/` named `*suffix` (one LIST)."""
    d = arc.loc.path("catalog", folder)
    arc.loc.fs.invalidate_cache(d)
    try:
        listed = arc.loc.fs.ls(d, detail=True)
    except FileNotFoundError:
        return []
    return sorted(e["name"] for e in listed if e.get("type") == "file" and e["name"].endswith(suffix))


def flat_objects(arc: Archive) -> tuple[list[str], list[str]]:
    """The flat folded copies and log slots on the store (none once converted): two LISTs."""
    return _flat(arc, "folded", BATCH_SUFFIX), [p for p in _flat(arc, "log", ".json") if SLOT_NAME.search(p)]


def fan_out(arc: Archive, version: int) -> int:
    """Convert `arc` (compacted, flat) to format `version` (fan-out); returns the flat objects
    removed. Idempotent: on an archive already converted it removes what a killed run left."""
    copies, slots = flat_objects(arc)
    if not arc.catalog.fanned:
        fanned = Catalog(arc.loc, fanned=True)
        for path in copies:
            name = path.rsplit("/", 1)[-1][: -len(BATCH_SUFFIX)]
            put_atomic(arc.loc, fanned.folded_path(name), arc.loc.fs.cat_file(path))
        manifest = arc.catalog.refresh().manifest
        if not present(arc.loc, slot_path(fanned.log, manifest.log_next)):  # a rerun finds its fence there
            claim(fanned.log, manifest.log_next, Slot(0, fence=manifest.generation))
        arc.set_format_version(version)
    remove_quietly(arc.loc, [*copies, *slots])
    return len(copies) + len(slots)
