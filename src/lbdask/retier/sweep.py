"""The sweep that ends every `lbdask retier --apply`: give back the bytes of copies that no
catalog row references any more.

A move never deletes the old copy when it commits: the new row just points elsewhere (a
re-encoded row at model Y's shard, a demoted one at a latent instead of its kept PNG). The
sweep deletes what was left behind - kept-original, pixel-tier and PNG metadata objects, and latent shard
objects of any bucket and model - but only objects of committed batches: an object no
committed batch names may belong to a writer that has not committed yet, which the store
cannot tell from a killed writer's orphan, so both stay. A latent shard holds up to
`shard_size` latents of one batch and goes only when none of them is referenced; released
latents sharing a shard with live ones stay pinned (reported). Deletes go one object at a
time, so a run killed during the sweep leaves only objects nobody reads, and the next
apply (which always sweeps) finishes it.
"""
from __future__ import annotations

from array import array
from itertools import chain

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.meta import FOLDER as META_FOLDER
from lbdask.archive.objects import remove_quietly


def sweep(arc: Archive) -> dict[str, int]:
    """Both sweeps; `objects`/`bytes` count everything deleted, `latent_*` the shard part of it,
    `pinned_*` the shards kept for live latents and the payload of released latents in them.

    Every row ever committed is read first (which shards belong to committed batches), then
    the current rows (what is live): a batch committing in between only adds live rows. The
    rows of every batch object not folded yet count as live too (the last of each id in name
    order, as `Catalog.listed_rows`): a writer killed between its batch object and its log slot
    left rows the view does not show yet, but the next compaction folds them. Both are kept
    per shard (a slot array, a bit mask), not per latent: memory grows by the shard.
    """
    unfolded: list[CatalogRow] = []
    written = committed_latents(arc, unfolded)
    referenced: set[str] = set()  # one key per batch object, not per row
    live: dict[tuple[str, int], int] = {}  # (bucket, shard) -> bit mask of its live latent slots
    for row in chain(arc.rows(), {r.id: r for r in unfolded}.values()):
        referenced.update(ref.key for _what, ref in row.object_refs())
        if row.bucket is not None and row.index is not None:
            key = (row.bucket, row.index // arc.shard_size)
            live[key] = live.get(key, 0) | 1 << row.index % arc.shard_size
    objects = sweep_objects(arc, referenced)
    latents = sweep_latents(arc, written, live)
    return {"objects": objects["objects"] + latents["latent_shards"], "bytes": objects["bytes"] + latents["latent_bytes"],
            **latents}


def committed_latents(arc: Archive, unfolded: list[CatalogRow]) -> dict[tuple[str, int], array]:
    """(bucket, shard) -> the stored bytes of each latent slot a committed batch wrote or named
    (-1: none), for every shard a committed row names; the rows of batch objects not folded yet
    go to `unfolded` (one read of each)."""
    written: dict[tuple[str, int], array] = {}
    for row in arc.committed_rows(unfolded):
        if row.bucket is not None and row.index is not None:
            key = (row.bucket, row.index // arc.shard_size)
            if key not in written:
                written[key] = array("q", [-1]) * arc.shard_size
            written[key][row.index % arc.shard_size] = row.stored_bytes
    return written


def sweep_objects(arc: Archive, referenced: set[str]) -> dict[str, int]:
    """Delete kept-original, pixel-tier and PNG metadata objects of committed batches whose keys
    are not in `referenced` (in their fan-out subfolders, `Archive.batch_object`, or directly in
    the folder as archives written before them hold them)."""
    committed = set(arc.catalog.batch_names()) | set(arc.catalog.folded_names())
    doomed, freed = [], 0
    for folder in ("originals", "pixels", META_FOLDER):
        d = arc.loc.path(folder)
        arc.loc.fs.invalidate_cache(d)
        try:
            listing = arc.loc.fs.find(d, detail=True)
        except FileNotFoundError:
            continue
        for path, info in listing.items():
            key = f"{folder}/{path.rsplit(f'/{folder}/', 1)[-1]}"  # relative to the root, as rows name it
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".bin") and name[:-4] in committed and key not in referenced:
                doomed.append(path)
                freed += int(info.get("size") or 0)
    remove_quietly(arc.loc, doomed)
    return {"objects": len(doomed), "bytes": freed}


def sweep_latents(arc: Archive, written: dict[tuple[str, int], array], live: dict[tuple[str, int], int]) -> dict[str, int]:
    """Delete the shard objects of `written` (committed_latents) holding no latent of `live`
    (bit masks of the live slots of each shard), one object at a time.

    A shard number is never handed out twice (`LatentBuckets.allocate`), so a shard a
    committed row named cannot be in flight for another writer. Buckets left empty keep
    their `zarr.json`: its `next_shard` is what keeps numbers from being handed out again.
    """
    out = {k: 0 for k in ("latent_shards", "latent_bytes", "pinned_shards", "pinned_bytes")}
    for key, slots in written.items():
        mask = live.get(key, 0)
        released = [n for slot, n in enumerate(slots) if n >= 0 and not mask >> slot & 1]
        if released and mask:
            out["pinned_shards"] += 1
            out["pinned_bytes"] += sum(released)
    doomed = {key for key in written if key not in live}
    for bucket in sorted({bucket for bucket, _ in doomed}):
        for path, nbytes in _shard_objects(arc, bucket, {shard for b, shard in doomed if b == bucket}):
            remove_quietly(arc.loc, [path])
            out["latent_shards"] += 1
            out["latent_bytes"] += nbytes
    return out


def _shard_objects(arc: Archive, bucket: str, shards: set[int]) -> list[tuple[str, int]]:
    """(path, bytes) of the shard objects of `bucket` numbered in `shards` that are on the store
    (one listing of the bucket's `c/`; the ones a killed sweep already deleted are not)."""
    d = arc.loc.path(arc.shards_folder(bucket))
    arc.loc.fs.invalidate_cache(d)
    try:
        found = arc.loc.fs.find(d, detail=True)
    except FileNotFoundError:
        return []
    out = []
    for path, info in sorted(found.items()):
        parts = path.rsplit("/", 4)  # .../c/<shard>/0/0/0
        if len(parts) == 5 and parts[2:] == ["0", "0", "0"] and parts[1].isdigit() and int(parts[1]) in shards:
            out.append((path, int(info.get("size") or 0)))
    return out
