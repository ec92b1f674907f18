"""Find what an archive lost and rebuild its catalog index from what is still on the store.

Sources of rows, in the order a later one wins: every v1 index partition file on the store
(older generations and attempts that never committed included), every sorted run a manifest
still on the store names (a run's footer is found through its manifest entry), then the
folded copy of every compacted batch (`catalog/folded/`), which holds every row any run
does. Batch objects not yet folded stay as they are. A rebuild writes one run afresh and
commits it as a new manifest generation with the same compare-and-swap as compaction, so it
is idempotent and safe to kill and rerun.
Latent shards and stored copies cannot be rebuilt: rows pointing at a missing one are
reported by id. See docs/archive-format.md for what is recoverable.
"""
from __future__ import annotations

import heapq
import itertools
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Self, TextIO

from lbdask.archive.catalog import Catalog
from lbdask.archive.commit_log import listed_slots, read_slot
from lbdask.archive.compaction import announce_generation, level_for, run_key
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import remove_quietly
from lbdask.archive.rows import CatalogRow, parse_rows
from lbdask.archive.run_writer import write_run
from lbdask.archive.runs import RunInfo, merge_newest_first
from lbdask.archive.spill import SortedRows, read_spill, spill_file
from lbdask.archive.store import Archive
from lbdask.errors import IntegrityError

PARTITION_FILE = re.compile(r"/index/g(\d+)(?:-[0-9a-f]+)?/p(\d+)\.jsonl\.gz$")
RUN_FILE = re.compile(r"/runs/(\d+)-[0-9a-f]+\.run$")


class Lines:
    """Text lines spilled to a file as they come, so that a diagnosis of an archive whose every
    data object is gone holds none of them in memory (one line per row: 10 M at 10 M rows);
    iterating reads them back in the order they came."""

    def __init__(self, folder: str) -> None:
        self.path, self.count = os.path.join(folder, "lost.txt"), 0
        self._out: TextIO | None = None

    def append(self, line: str) -> None:
        if self._out is None:
            self._out = open(self.path, "a", encoding="utf-8")
        self._out.write(line.replace("\n", " ") + "\n")
        self.count += 1

    def seal(self) -> None:
        """Close the file for writing (iterating seals it)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        self.seal()
        if self.count:
            with open(self.path, encoding="utf-8") as f:
                yield from (line.rstrip("\n") for line in f)


@dataclass
class Diagnosis:
    """What is wrong with an archive and what a rebuild would restore. The recoverable rows
    and the lines naming lost data are spilled to a private temporary folder
    (`spill.SortedRows`, `Lines`), not held: `close()` removes it (or the garbage collector,
    for a Diagnosis only looked at)."""

    catalog: list[str] = field(default_factory=list)  # missing/unreadable catalog objects
    recovered: int = 0  # every recoverable folded row
    indexed: int = 0  # recoverable rows the current index serves
    generation: int = 0  # highest generation seen anywhere on the store
    unreferenced: list[str] = field(default_factory=list)  # partition and run files the manifest does not name
    folder: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="lbdask-repair-"))
    rows: SortedRows = field(init=False)  # the recoverable rows, ascending by id
    data: Lines = field(init=False)  # rows whose latent shard or stored copy is gone, by id

    def __post_init__(self) -> None:
        self.rows, self.data = SortedRows(self.folder), Lines(self.folder)
        # hung on the lines, which the diagnosis holds: the folder goes once neither is in use
        self.close = weakref.finalize(self.data, shutil.rmtree, self.folder, True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def needs_rebuild(self) -> bool:
        return bool(self.catalog) or self.indexed < self.recovered


def _index_files(cat: Catalog, folder: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(generation, path) of every v1 partition file or run object on the store, oldest first."""
    try:
        found = cat.loc.fs.find(cat.loc.path("catalog", folder))
    except FileNotFoundError:
        return []
    return sorted((int(m.group(1)), p) for p in found if (m := pattern.search(p)))


def _runs_named(cat: Catalog, gens: list[int]) -> list[RunInfo]:
    """The runs the manifests still on the store name, oldest manifest first (readable ones)."""
    runs: dict[str, RunInfo] = {}
    for g in gens:
        try:
            runs.update((r.key, r) for r in reversed(cat.manifests.read(g).runs))
        except (FileNotFoundError, IntegrityError):
            continue
    return list(runs.values())


class _Runs:
    """Each run read once: a run is used all or not at all (as when its rows were collected in
    a dict), so its scan is copied into a local spill file before any of its rows is used
    (a run that fails midway leaves no copy, only its problem line), and every use of the run
    reads the copy."""

    def __init__(self, cat: Catalog, folder: str) -> None:
        self.cat, self.folder = cat, folder
        self.copies: dict[str, str] = {}  # run key -> its spill file
        self.damage: dict[str, str] = {}  # run key -> its problem line

    def readable(self, runs: list[RunInfo], problems: list[str]) -> list[RunInfo]:
        """`runs` that scan whole; a problem line for each of the others."""
        out = []
        for run in runs:
            if run.key not in self.copies and run.key not in self.damage:
                self._copy(run)
            if run.key in self.copies:
                out.append(run)
            else:
                problems.append(self.damage[run.key])
        return out

    def _copy(self, run: RunInfo) -> None:
        try:
            self.copies[run.key] = spill_file(self.folder, self.cat.runs.scan(run))
        except (FileNotFoundError, IntegrityError) as exc:
            what = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
            self.damage[run.key] = f"{self.cat.loc.path(run.key)}: {what}"

    def rows(self, runs: list[RunInfo]) -> list[Iterator[CatalogRow]]:
        """The copies of `runs` (oldest first, each `readable`), newest first: for `merge_newest_first`."""
        return [read_spill(self.copies[r.key]) for r in reversed(runs)]


def _read(cat: Catalog, path: str, problems: list[str]) -> list[CatalogRow]:
    try:
        return parse_rows(path, cat.loc.fs.cat_file(path))
    except (FileNotFoundError, IntegrityError) as exc:
        problems.append(f"{path}: {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'}")
        return []


def _spilled(diag: Diagnosis, cat: Catalog, paths: Iterable[str], problems: list[str]) -> SortedRows:
    """The rows of the catalog objects at `paths` (a later one wins), sorted by id, spilled."""
    out = SortedRows(diag.folder)
    for path in paths:
        out.add(_read(cat, path, problems))
    return out.seal()


def _manifest(cat: Catalog, diag: Diagnosis, folded: bool) -> tuple[list[int], Manifest | None]:
    """The generations on the store and the latest manifest (None: lost or unreadable)."""
    gens = cat.manifests.generations()
    manifest = None
    if gens:
        try:
            manifest = cat.manifests.read(gens[-1])
        except IntegrityError as exc:
            diag.catalog.append(str(exc))
    if manifest is None and folded and not diag.catalog:
        diag.catalog.append("the catalog manifest is missing (catalog/manifests/ is empty)")
    return gens, manifest


def diagnose(arc: Archive) -> Diagnosis:
    """Check the manifest, every partition it names, every folded copy and every data object.
    Streams: every source is sorted by id and spilled (a run's scan copied as it is: each run
    is read once), and one merge of them in id order counts, checks the data objects and
    spills the recoverable rows (memory: a chunk)."""
    cat, diag = arc.catalog, Diagnosis()
    runs = _Runs(cat, diag.folder)
    folded_names = cat.folded_names()
    gens, manifest = _manifest(cat, diag, bool(folded_names))
    files = list(manifest.files.values()) if manifest is not None else []
    current = list(reversed(manifest.runs)) if manifest is not None else []  # oldest first: newer rows win
    v1_index = _spilled(diag, cat, map(cat.loc.path, files), diag.catalog)
    index = merge_newest_first([*runs.rows(runs.readable(current, diag.catalog)), iter(v1_index)])
    referenced = {cat.loc.path(key) for key in [*files, *(r.key for r in current)]}
    partitions = _index_files(cat, "index", PARTITION_FILE)
    run_files = _index_files(cat, "runs", RUN_FILE)
    ignored: list[str] = []
    older = _spilled(diag, cat, (p for _g, p in partitions), ignored)
    named = runs.readable(_runs_named(cat, gens), ignored)
    folded = _spilled(diag, cat, map(cat.folded_path, folded_names), diag.catalog)
    recoverable = merge_newest_first([iter(folded), *runs.rows(named), iter(older)])
    late: list[str] = []
    recent = _spilled(diag, cat, map(cat.batch_path, cat.batch_names()), late)
    _missing_data(arc, _tally(diag, recoverable, index, iter(recent)), diag.data)
    if diag.indexed < diag.recovered:
        diag.catalog.append(f"{diag.recovered - diag.indexed} compacted row(s) are not in the current index")
    diag.catalog += late
    diag.generation = max([*gens, *(g for g, _ in partitions), *(g for g, _ in run_files), 0])
    diag.unreferenced = [p for _g, p in [*partitions, *run_files] if p not in referenced]
    return diag


def _tally(diag: Diagnosis, recoverable: Iterator[CatalogRow], index: Iterator[CatalogRow],
           recent: Iterator[CatalogRow]) -> Iterator[CatalogRow]:
    """Each id once, ascending: its row as readers see it (a recent commit, else the index,
    else the recoverable row); on the way, counts the recoverable and indexed rows and spills
    the recoverable ones into `diag.rows`."""
    for row, indexed, newest in _aligned([recoverable, index, recent]):
        if row is not None:
            diag.recovered += 1
            diag.indexed += indexed is not None
            diag.rows.add([row])
        yield next(r for r in (newest, indexed, row) if r is not None)
    diag.rows.seal()


def _aligned(streams: list[Iterator[CatalogRow]]) -> Iterator[list[CatalogRow | None]]:
    """The ids of ascending `streams` (each id once per stream) in order: per id, each
    stream's row of it or None."""
    merged = heapq.merge(*(_tagged(n, s) for n, s in enumerate(streams)))
    for _id, group in itertools.groupby(merged, key=lambda t: t[0]):
        out: list[CatalogRow | None] = [None] * len(streams)
        for _, n, row in group:
            out[n] = row
        yield out


def _tagged(n: int, rows: Iterator[CatalogRow]) -> Iterator[tuple[str, int, CatalogRow]]:
    return ((row.id, n, row) for row in rows)


def _missing_data(arc: Archive, rows: Iterable[CatalogRow], out: Lines) -> None:
    """Append to `out` one line per row (ascending by id) whose latent shard, stored copy,
    pixel copy or PNG metadata object is missing or too short on the store."""
    fs, listed = arc.loc.fs, {}

    def present(folder: str) -> dict[str, int]:
        if folder not in listed:
            try:
                listed[folder] = {p.rstrip("/"): int(i.get("size") or 0) for p, i in fs.find(folder, detail=True).items()}
            except FileNotFoundError:
                listed[folder] = {}
        return listed[folder]

    for row in rows:
        if row.status == "latent" and row.bucket is not None and row.index is not None:
            key = arc.shard_key(row.bucket, row.index // arc.shard_size)
            if arc.loc.path(key) not in present(arc.loc.path(arc.shards_folder(row.bucket))):
                out.append(f"{row.id}: latent shard {key} is missing")
        for what, ref in row.object_refs():
            if ref.size:
                size = present(arc.loc.path(ref.key.split("/", 1)[0])).get(arc.loc.path(ref.key))
                if size is None or size < ref.offset + ref.size:
                    out.append(f"{row.id}: {what} object {ref.key} is missing or truncated")
    out.seal()


def _first_slot(cat: Catalog) -> int:
    """Where readers start in the commit log when the manifest that said so is lost: after the
    newest fence (LISTs of the newest log folder, then reads from the newest slot back): the slots below it were
    folded, so their rows are in the folded copies this repair reads; 0 without a fence."""
    for seq in listed_slots(cat.log):
        try:
            slot = read_slot(cat.log, seq)
        except IntegrityError:  # an unreadable slot: diagnose reports the batches, not the log
            continue
        if slot is not None and slot.fence is not None:
            return seq + 1
    return 0


def rebuild(arc: Archive, diag: Diagnosis) -> Manifest:
    """Write every recoverable row into a new index generation and commit it (CAS)."""
    cat, loc = arc.catalog, arc.loc
    log_next = None
    try:
        current = cat.manifests.latest()
        log_next = current.log_next if current is not None else None
    except (IntegrityError, FileNotFoundError):
        pass
    generation = diag.generation + 1
    run = write_run(loc, run_key(generation), iter(diag.rows), level=level_for(diag.recovered))
    new = Manifest(generation, version=2, runs=[run] if run is not None else [],
                   log_next=_first_slot(cat) if log_next is None else log_next)
    announce_generation(cat, new)
    if not cat.manifests.create(new):
        raise IntegrityError(f"another process committed catalog generation {new.generation} meanwhile: run repair again")
    cat.manifests.prune(below=new.generation)
    cat.manifests.write_hint(new)
    mine = {loc.path(r.key) for r in new.runs}
    old = [p for _g, p in [*_index_files(cat, "index", PARTITION_FILE), *_index_files(cat, "runs", RUN_FILE)]]
    remove_quietly(loc, [p for p in old if p not in mine])  # the new index holds their rows
    return new
