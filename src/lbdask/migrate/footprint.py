"""What one migration added to the store, per part, measured on the objects it can have changed.

`Archive.bytes_on_store` lists the whole archive (a du of millions of objects at 10 M images),
so a job no longer calls it at its start and end. It measures, before and after, only what the
job can change (it holds the archive's lease, so nothing else writes meanwhile): the Zarr
metadata of the buckets, the shards it allocated (fresh numbers: absent before), the
`originals/` and `meta/` objects of its batches, the catalog folders bounded by the compaction
cadence (`batches/`, `runs/`, `manifests/`, `index/`), the log slots claimed since it started and
the folded copies of its batches and of those left unfolded before it. Every other object is
untouched by a migration, so the difference equals that of a du before and after
(`tests/migrate/test_footprint.py`), at a cost that follows the job: one LIST per bounded folder
and bucket listing, one HEAD per object of the job. `pixels/` is only written by `lbdask retier`.
"""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from lbdask.archive import Archive
from lbdask.archive.commit_log import first_absent, slot_path
from lbdask.archive.meta import FOLDER as META_FOLDER
from lbdask.archive.reads import size_of

#: The parts a job record breaks stored bytes into (`Archive.bytes_on_store`'s).
PARTS = ("latents", "originals", "catalog", META_FOLDER, "pixels")
#: Catalog folders whose listing is bounded by the compaction cadence and log2 of the archive.
BOUNDED = ("batches", "runs", "manifests", "index")
#: Concurrent HEADs (S3) while sizing a job's objects.
THREADS = 16


class Footprint:
    """Sizes taken at the job's start (`Footprint(arc)`, then `plan`) and compared by `added`."""

    def __init__(self, arc: Archive) -> None:
        self.arc = arc
        self.log_start = first_absent(arc.catalog.log, arc.catalog.manifest().log_next)
        self.unfolded = arc.catalog.batch_names()  # the job's compactions fold these too
        self.before = self._fixed()
        self.paths: dict[str, list[str]] = {}  # part -> the job's objects in it
        self.sized: dict[str, int] = {}  # their sizes before the job wrote

    def plan(self, batch_ids: list[str], shards: Iterable[tuple[str, int]]) -> None:
        """The objects the planned batches write (sized now: a killed job may have left some)
        and the shards allocated to them (fresh numbers: none is on the store yet)."""
        arc, loc = self.arc, self.arc.loc
        for folder in ("originals", META_FOLDER):
            self.paths[folder] = [loc.path(arc.batch_object(folder, b)) for b in batch_ids]
        self.paths["catalog"] = [arc.catalog.folded_path(b) for b in sorted({*batch_ids, *self.unfolded})]
        self.sized = self._sizes(p for paths in self.paths.values() for p in paths)
        self.paths["latents"] = [loc.path(arc.shard_key(bucket, shard)) for bucket, shard in shards]

    def added(self) -> dict[str, int]:
        """Bytes added per part since the start (a negative part: the job's compactions removed more)."""
        log = self.arc.catalog.log
        slots = [slot_path(log, n) for n in range(self.log_start, first_absent(log, self.log_start))]
        now = self._sizes([*(p for paths in self.paths.values() for p in paths), *slots])
        after = self._fixed()
        out = {part: after[part] - self.before[part] for part in PARTS}
        for part, paths in self.paths.items():
            out[part] += sum(now.get(p, 0) - self.sized.get(p, 0) for p in paths)
        out["catalog"] += sum(now.get(p, 0) for p in slots)  # claimed since the start: absent before
        return out

    def _fixed(self) -> dict[str, int]:
        """Sizes of the bounded parts: the buckets' Zarr metadata, the bounded catalog folders."""
        loc, out = self.arc.loc, dict.fromkeys(PARTS, 0)
        buckets = [p.rstrip("/") + "/zarr.json" for p in _listed(self.arc, "latents") if not p.endswith(".json")]
        out["latents"] = sum(self._sizes([loc.path("latents", "zarr.json"), *buckets]).values())
        for folder in BOUNDED:
            d = loc.path("catalog", folder)
            loc.fs.invalidate_cache(d)
            try:
                out["catalog"] += int(loc.fs.du(d, total=True))
            except FileNotFoundError:
                continue
        return out

    def _sizes(self, paths: Iterable[str]) -> dict[str, int]:
        """Size of each present object (one HEAD each, THREADS at a time)."""
        paths = list(paths)
        with ThreadPoolExecutor(THREADS) as pool:
            sizes = list(pool.map(lambda p: size_of(self.arc.loc, p), paths))
        return {p: s for p, s in zip(paths, sizes, strict=True) if s is not None}


def _listed(arc: Archive, folder: str) -> list[str]:
    """The entries directly under `folder` (one LIST; none when it is absent)."""
    d = arc.loc.path(folder)
    arc.loc.fs.invalidate_cache(d)
    try:
        return list(arc.loc.fs.ls(d, detail=False))
    except FileNotFoundError:
        return []
