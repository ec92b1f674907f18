"""Compaction: fold committed batch objects into a new index generation, safely concurrent.

One attempt: list the batch objects, read the latest manifest G, write the touched
partitions merged with their current files under a directory unique to this attempt
(`catalog/index/g<G+1>-<token>/`), then commit by creating manifest G+1 exclusively. Only
after that: keep a copy of each folded batch under `catalog/folded/`, delete the batch
objects, the partition files G+1 superseded and older manifests. An attempt that loses the
race (G+1 exists) removes its own files and starts over; nothing another compactor wrote
is ever overwritten or deleted before it is superseded. A crash at any point leaves at
worst unreferenced files and batch objects that the next compaction folds again.
"""
from __future__ import annotations

import random
import time
import uuid

from lbdask.archive.catalog import BATCH_SUFFIX, Catalog, parse_rows, partition_of
from lbdask.archive.commit_log import Slot, first_absent, slot_path
from lbdask.archive.commit_log import claim as claim_slot
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import put_atomic, remove_quietly
from lbdask.archive.rows import CatalogRow, dump_rows

#: Attempts before a compactor that keeps losing the race steps back (its batches stay
#: visible as batch objects; the next compaction folds them).
COMPACT_ATTEMPTS = 8


def compact(catalog: Catalog, attempts: int = COMPACT_ATTEMPTS) -> dict[str, int]:
    """Fold every committed batch object into the index; returns what the commit folded.

    `stepped_back` is 1 when every attempt lost to other compactors (nothing is lost then:
    the batch objects stay and are folded by a later compaction).
    """
    for attempt in range(attempts):
        try:
            done = _attempt(catalog)
        except FileNotFoundError:  # another compactor folded and removed what this one read
            done = None
        if done is not None:
            return done
        time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 5)))
    return {"batches": 0, "rows": 0, "generation": catalog.manifest().generation, "stepped_back": 1}


def _attempt(catalog: Catalog) -> dict[str, int] | None:
    """One compaction attempt; None when another compactor committed first."""
    loc = catalog.loc
    old = catalog.refresh().manifest  # refuses to build on a catalog whose manifest was lost
    end = first_absent(loc, old.log_next)
    if end == old.log_next and not catalog.batch_names():
        return {"batches": 0, "rows": 0, "generation": old.generation, "stepped_back": 0}
    fence, _ = claim_slot(loc, end, Slot(0, fence=old.generation + 1))  # slots below it: folded here
    names = catalog.batch_names()  # listed after the fence: every batch announced below it is listed
    blobs = {name: loc.fs.cat_file(catalog.batch_path(name)) for name in names}
    by_part: dict[int, dict[str, CatalogRow]] = {}
    n_rows = 0
    for name in names:
        for row in parse_rows(catalog.batch_path(name), blobs[name]):
            by_part.setdefault(partition_of(row.id, old.partitions), {})[row.id] = row
            n_rows += 1
    new = Manifest(old.generation + 1, old.partitions, dict(old.files), names, version=1,
                   log_next=fence + 1)
    folder = f"catalog/index/g{new.generation:06d}-{uuid.uuid4().hex[:12]}"
    written = []
    for part, fresh in sorted(by_part.items()):
        merged = dict(catalog.partition_rows(old.files[part])) if part in old.files else {}
        merged.update(fresh)
        key = f"{folder}/p{part:05d}{BATCH_SUFFIX}"
        put_atomic(loc, loc.path(key), dump_rows(merged[i] for i in sorted(merged)))
        written.append(loc.path(key))
        new.files[part] = key
    if not catalog.manifests.create(new):
        remove_quietly(loc, written)  # nobody can reference an attempt that did not commit (its fence stays: harmless)
        return None
    if catalog.manifests.generations()[-1] != new.generation:
        # A newer generation exists already: ours was either built upon or a stale number
        # (its earlier holder was pruned). Not knowing which, delete nothing and fold again.
        return None
    for name in names:
        put_atomic(loc, catalog.folded_path(name), blobs[name])
    remove_quietly(loc, [catalog.batch_path(n) for n in names])
    _drop_slots(catalog, old.log_next - 1, new.log_next - 1)
    remove_quietly(loc, [loc.path(old.files[p]) for p in by_part if p in old.files])
    catalog.manifests.prune(below=new.generation)
    catalog.manifests.write_hint(new)
    catalog.forget(names)
    return {"batches": len(names), "rows": n_rows, "generation": new.generation, "stepped_back": 0}


def _drop_slots(catalog: Catalog, start: int, stop: int) -> None:
    """Delete log slots [start, stop) oldest first (readers tell a compaction by a missing
    predecessor of the slot they probe: see catalog_view.py)."""
    for seq in range(max(start, 0), stop):
        remove_quietly(catalog.loc, [slot_path(catalog.loc, seq)])
