"""Compaction: fold committed batches into a new sorted run, then merge runs by level; safely concurrent.

A fold: probe the commit log from the manifest's `log_next` to the first absent slot, claim
that slot as this attempt's fence, LIST `catalog/batches/` (every batch announced below the
fence is there, or already folded), write their rows as one level-0 run (newer commits
winning) under a name unique to the attempt, then commit by creating manifest G+1
exclusively with the run prepended and `log_next` = fence + 1. Only after that: keep a copy
of each folded batch under `catalog/folded/`, delete the batch objects, prune older
manifests and write the hint (log slots stay: commit_log.py). A catalog still in the v1
layout (hash partitions) is converted by its first fold: the partitions and the new rows
become one run (`convert`). An attempt that loses the race removes its run and starts
over; nothing another compactor wrote is deleted before it is superseded.

A merge (`levels.plan_merge`): stream the chosen contiguous runs through
`merge_newest_first` into one run, commit G+1 with it in their place; on a lost race rebase
onto the newer manifest when the group is still there, else drop the merged run. A crash at
any point leaves at worst unreferenced objects and batches the next compaction folds again.
"""
from __future__ import annotations

import random
import tempfile
import time
import uuid
from collections.abc import Iterator

from lbdask.archive.catalog import Catalog
from lbdask.archive.catalog_view import View
from lbdask.archive.commit_log import Slot, first_absent, read_slot
from lbdask.archive.commit_log import claim as claim_slot
from lbdask.archive.levels import merged_level, plan_merge
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import put_atomic, remove_quietly
from lbdask.archive.reads import read_object
from lbdask.archive.rows import CatalogRow, parse_rows
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RunInfo, merge_newest_first
from lbdask.archive.spill import SortedRows

#: Attempts before a compactor that keeps losing the race steps back (its batches stay
#: visible as batch objects; the next compaction folds them).
COMPACT_ATTEMPTS = 8


def compact(catalog: Catalog, attempts: int = COMPACT_ATTEMPTS) -> dict[str, int]:
    """Fold every committed batch into the index, then merge runs until no merge is due;
    returns what the fold committed (`generation`: the latest after the merges).

    `stepped_back` is 1 when every attempt lost to other compactors (nothing is lost then:
    the batch objects stay and are folded by a later compaction).
    """
    for attempt in range(attempts):
        try:
            done = _attempt(catalog)
        except FileNotFoundError:  # another compactor folded and removed what this one read
            done = None
        if done is not None:
            done["generation"] = merge_runs(catalog, attempts)
            return done
        time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 5)))
    return {"batches": 0, "rows": 0, "generation": catalog.manifest().generation, "stepped_back": 1}


def run_key(generation: int) -> str:
    """A new run's key, unique to the attempt that writes it. One flat folder: it holds only
    the live runs (O(log N)) and those not yet deleted, never an empty folder per compaction."""
    return f"catalog/runs/{generation:010d}-{uuid.uuid4().hex[:12]}.run"


def _attempt(catalog: Catalog) -> dict[str, int] | None:
    """One fold attempt; None when another compactor committed first."""
    loc = catalog.loc
    view = catalog.refresh(rows=False)  # refuses to build on a catalog whose manifest was lost
    old = view.manifest
    end = first_absent(catalog.log, view.end)  # the view read the slots up to its end
    if end == old.log_next and not catalog.batch_names() and old.version == 2:
        return {"batches": 0, "rows": 0, "generation": old.generation, "stepped_back": 0}
    fence = claim_slot(catalog.log, end, Slot(0, fence=old.generation + 1))  # slots below it: folded here
    names = _fold_order(catalog, view, fence, catalog.batch_names())  # listed after the fence
    blobs = {name: _batch_blob(catalog, name) for name in names}
    fresh: dict[str, CatalogRow] = {}
    for name in names:  # oldest first: newer commits win
        fresh.update((r.id, r) for r in parse_rows(catalog.batch_path(name), blobs[name]))
    new = Manifest(old.generation + 1, folded=names, version=2, runs=list(old.runs), log_next=fence + 1)
    run = _fold_run(catalog, old, fresh, new.generation)
    if run is not None:
        new.runs.insert(0, run)
    if not _commit(catalog, new, [run]):
        return None
    for name in names:
        put_atomic(loc, catalog.folded_path(name), blobs[name])
    remove_quietly(loc, [catalog.batch_path(n) for n in names])
    remove_quietly(loc, [loc.path(key) for key in old.files.values()])  # v1 partitions, now in the run
    _published(catalog, new)
    catalog.forget(names)
    return {"batches": len(names), "rows": len(fresh), "generation": new.generation, "stepped_back": 0}


def _fold_order(catalog: Catalog, view: View, fence: int, listed: list[str]) -> list[str]:
    """The batches to fold, oldest commit first: listed but never announced ones (a writer
    that crashed before its slot: by name), then the announced ones in slot order (those
    `view` read, then the slots announced since, up to the fence)."""
    announced = [*view.batches, *(slot.batch for n in range(view.end, fence)
                                  if (slot := read_slot(catalog.log, n)) is not None and slot.batch is not None)]
    seen = set(announced)
    return [n for n in listed if n not in seen] + list(dict.fromkeys(announced))


def _batch_blob(catalog: Catalog, name: str) -> bytes:
    """A batch's object, or its folded copy when another compactor folded it meanwhile."""
    try:
        return catalog.loc.fs.cat_file(catalog.batch_path(name))
    except FileNotFoundError:
        return catalog.loc.fs.cat_file(catalog.folded_path(name))


def _fold_run(catalog: Catalog, old: Manifest, fresh: dict[str, CatalogRow], generation: int) -> RunInfo | None:
    """The level-0 run of the folded rows; for a v1 catalog one run of the partitions and
    the folded rows (`convert`)."""
    rows: Iterator[CatalogRow] = (fresh[i] for i in sorted(fresh))
    if old.version == 1:
        return convert(catalog, old, rows, generation)
    return write_run(catalog.loc, run_key(generation), rows, level=0)


def convert(catalog: Catalog, old: Manifest, newer: Iterator[CatalogRow], generation: int) -> RunInfo | None:
    """One run of a v1 catalog's hash partitions merged with `newer` rows (which win), at the
    level that holds its size: what a v1 catalog becomes. The partitions are read one at a
    time and sorted through a local spill (`spill.SortedRows`): memory is a chunk, not the index."""
    newer = list(newer)
    count = len(newer)
    with tempfile.TemporaryDirectory(prefix="lbdask-convert-") as folder:
        parts = SortedRows(folder)
        for _part, key in sorted(old.files.items()):
            rows = parse_rows(catalog.loc.path(key), read_object(catalog.loc, catalog.loc.path(key)))
            count += len({r.id for r in rows})  # as the partition's dict held them
            parts.add(rows)
        rows = merge_newest_first([iter(newer), iter(parts.seal())])
        return write_run(catalog.loc, run_key(generation), rows, level=level_for(count))


def level_for(rows: int) -> int:
    """The lowest level >= 1 whose run may hold `rows` rows (`plan_merge` does not merge it)."""
    level = 1
    while plan_merge([RunInfo("", level, rows, 0, 0, 0, "", "")]) is not None:
        level += 1
    return level


def _commit(catalog: Catalog, new: Manifest, written: list[RunInfo | None]) -> bool:
    """Create `new` exclusively and check it is the newest; else remove `written` runs (a lost
    race) or leave everything (a newer generation exists: built upon ours, or ours was a
    stale number; not knowing which, delete nothing)."""
    if not catalog.manifests.create(new):
        remove_quietly(catalog.loc, [catalog.loc.path(r.key) for r in written if r is not None])
        return False
    return catalog.manifests.generations()[-1] == new.generation


def announce_generation(catalog: Catalog, new: Manifest) -> None:
    """A fence for generation `new` after the slots announced so far (`new.log_next` stays):
    warm readers, which watch the log and not the manifests, learn of a merge or a repair
    from it."""
    claim_slot(catalog.log, first_absent(catalog.log, new.log_next), Slot(0, fence=new.generation))


def _published(catalog: Catalog, new: Manifest) -> None:
    """After a commit: prune older manifests, then point the hint at `new`."""
    catalog.manifests.prune(below=new.generation)
    catalog.manifests.write_hint(new)


def merge_runs(catalog: Catalog, attempts: int = COMPACT_ATTEMPTS) -> int:
    """Merge runs while `plan_merge` names a group; returns the generation reached."""
    manifest, lost = catalog.manifest(), 0
    while lost < attempts and (group := plan_merge(manifest.runs)) is not None:
        try:
            merged = _merge(catalog, manifest, group, attempts)
        except FileNotFoundError:  # another compactor merged a run of the group away meanwhile
            merged = manifest
        if merged is manifest:  # nothing committed: plan again on the latest manifest
            lost += 1
            merged = catalog.refresh().manifest
        manifest = merged
    return manifest.generation


def _merge(catalog: Catalog, manifest: Manifest, group: list[RunInfo], attempts: int) -> Manifest:
    """Write the group's rows as one run and commit it in the group's place, rebasing onto a
    newer manifest after a lost race; returns the manifest it committed (or `manifest`
    unchanged when the group is gone or the attempts ran out)."""
    loc = catalog.loc
    rows = merge_newest_first([catalog.runs.scan(r, raw=True) for r in group])  # copied, not parsed
    run = write_run(loc, run_key(manifest.generation + 1), rows, level=merged_level(group))
    keys = [r.key for r in group]
    base = manifest
    for _ in range(attempts):
        at = [r.key for r in base.runs]
        i = next((i for i in range(len(at)) if at[i:i + len(keys)] == keys), None)
        if i is None:
            break  # another compactor merged some of the group: ours is not needed
        new = Manifest(base.generation + 1, version=2, runs=[*base.runs[:i], run, *base.runs[i + len(keys):]],
                       log_next=base.log_next)
        announce_generation(catalog, new)
        if catalog.manifests.create(new):
            if catalog.manifests.generations()[-1] != new.generation:
                return manifest
            remove_quietly(loc, [loc.path(k) for k in keys])
            _published(catalog, new)
            return new
        base = catalog.refresh().manifest  # rebase: the group may still be there
    remove_quietly(loc, [loc.path(run.key)])
    return manifest
