"""A catalog of N rows in the shape a job's build leaves it, written run by run (issue 25, 10M).

Building 10M rows commit by commit (`catalog_scale.py --phase build`) costs ~260 us of CPU per
row (serialise at commit, parse twice (once since 2026-12-07) and serialise again in the fold, ~13 merge rewrites),
about an hour of a free core: more than a shared machine gives. The read side (lookups, their
requests, the streaming commands) depends only on the runs a build leaves: `shape` replays
`levels.plan_merge` over the build's folds (row counts only) to find them, and `write` writes
each with `run_writer.write_run` from the rows' JSON lines (made by worker processes) (`catalog_build.kept_row`'s rows, the line
built from a template: `check_lines` compares it with `rows.row_line`), then manifest generation 1 naming them (no commit log, nothing unfolded: the catalog
right before the job's final compaction).

Usage: python benchmarks/catalog_direct.py DEST N [--fold 8192] [--workers 4]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import multiprocessing
import multiprocessing.pool
import random
import sys
import time

from catalog_build import kept_row, write_sample
from catalog_rows import image_id
from catalog_scale import CORPUS, MODEL, corpus_sample

from lbdask.archive import Archive
from lbdask.archive.levels import merged_level, plan_merge
from lbdask.archive.manifest import Manifest
from lbdask.archive.rows import ChunksRef, row_line
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RawRow, RunInfo
from lbdask.storage import Location

Shape = list[tuple[int, int, int]]  # newest first: (level, first row number, end)


def shape(n: int, fold: int) -> tuple[Shape, int]:
    """The runs a build of rows 0..n-1 in folds of `fold` rows leaves, and the rows its
    compactions wrote (folds and merges; rows of a run are a contiguous range of numbers)."""
    runs: Shape = []
    written = 0
    for lo in range(0, n, fold):
        runs.insert(0, (0, lo, min(n, lo + fold)))
        written += runs[0][2] - lo
        while (group := plan_merge([RunInfo(str(k), lv, b - a, 0, 0, 0, "", "") for k, (lv, a, b) in enumerate(runs)])):
            first, last = int(group[0].key), int(group[-1].key)
            a, b = runs[last][1], runs[first][2]
            written += b - a
            runs[first:last + 1] = [(merged_level(group), a, b)]
    return runs, written


def fold_batch(i: int, fold: int) -> str:
    return f"keep-a-{i // fold:07d}"


class Lines:
    """`row_line(kept_row(i, refs, batch))` from a template: the same dict, a few fields set."""

    def __init__(self, refs: list[ChunksRef], fold: int) -> None:
        self.refs, self.fold = [r.__dict__ | {"types": list(r.types)} for r in refs], fold
        self.base = kept_row(0, refs, "b").to_json()

    def line(self, i: int) -> str:
        rng = random.Random(i)
        d = copy.copy(self.base)
        d["chunks_ref"] = self.refs[rng.randrange(len(self.refs))]
        size = rng.randrange(2_000, 40_000)
        batch = fold_batch(i, self.fold)
        d.update(id=image_id(i), source_size=size, stored_bytes=size, batch_id=batch,
                 source_sha256=hashlib.sha256(image_id(i).encode()).hexdigest(),
                 source_stamp=f"mtime:{1_700_000_000_000_000_000 + i}",
                 width=rng.randrange(16, 65), height=rng.randrange(16, 65))
        d["original"] = {"key": f"originals/{batch}.bin", "offset": rng.randrange(0, 300_000), "size": size}
        return json.dumps(d, separators=(",", ":"))


def check_lines(lines: Lines, refs: list[ChunksRef], count: int = 200) -> None:
    for i in random.Random(0).sample(range(10**7), count):
        assert lines.line(i) == row_line(kept_row(i, refs, fold_batch(i, lines.fold))), i


_LINES: Lines | None = None


def _start(refs: list[ChunksRef], fold: int) -> None:
    global _LINES
    _LINES = Lines(refs, fold)


def folder_lines(job: tuple[int, int, int]) -> list[RawRow]:
    """The rows of numbers lo..hi-1 in folder d (`image_id`: folder i % 997), ascending."""
    d, lo, hi = job
    return [RawRow(image_id(i), _LINES.line(i)) for i in range(lo + (d - lo) % 997, hi, 997)]


def write_one(pool: multiprocessing.pool.Pool, loc: Location, level: int, lo: int, hi: int, key: str) -> RunInfo:
    """One run of rows lo..hi-1: the worker processes make the lines folder by folder (in
    id order), this one writes them (`write_run`: blocks, gzip, index)."""
    rows = (r for chunk in pool.imap(folder_lines, [(d, lo, hi) for d in range(997)], chunksize=4) for r in chunk)
    return write_run(loc, key, rows, level)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("n", type=int)
    ap.add_argument("--fold", type=int, default=8192, help="rows per fold of the build it stands for")
    ap.add_argument("--workers", type=int, default=4, help="processes making the rows' lines")
    args = ap.parse_args()
    arc = Archive.create(args.dest, MODEL)
    refs = write_sample(arc, corpus_sample(CORPUS))
    check_lines(Lines(refs, args.fold), refs)
    runs, written = shape(args.n, args.fold)
    print(f"# shape {runs}, rows written by the build's compactions: {written / args.n:.2f} x N", flush=True)
    t0 = time.perf_counter()
    with multiprocessing.Pool(args.workers, _start, (refs, args.fold)) as pool:
        infos = [write_one(pool, arc.loc, lv, a, b, f"catalog/runs/0000000001-r{k}.run") for k, (lv, a, b) in enumerate(runs)]
    arc.catalog.manifests.create(Manifest(1, version=2, runs=infos, log_next=0))
    arc.catalog.manifests.write_hint(arc.catalog.manifests.read(1))
    print(json.dumps({"write_s": time.perf_counter() - t0, "runs": [r.to_json() for r in infos],
                      "written_rows_per_row": written / args.n}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
