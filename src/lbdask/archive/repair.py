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

import re
from dataclasses import dataclass, field

from lbdask.archive.catalog import Catalog, parse_rows
from lbdask.archive.commit_log import SLOT_NAME, read_slot
from lbdask.archive.compaction import announce_generation, level_for, run_key
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import remove_quietly
from lbdask.archive.rows import CatalogRow
from lbdask.archive.runs import RunInfo, write_run
from lbdask.archive.store import Archive
from lbdask.errors import IntegrityError

PARTITION_FILE = re.compile(r"/index/g(\d+)(?:-[0-9a-f]+)?/p(\d+)\.jsonl\.gz$")
RUN_FILE = re.compile(r"/runs/(\d+)-[0-9a-f]+\.run$")


@dataclass
class Diagnosis:
    """What is wrong with an archive and what a rebuild would restore."""

    catalog: list[str] = field(default_factory=list)  # missing/unreadable catalog objects
    data: list[str] = field(default_factory=list)  # rows whose latent shard or stored copy is gone
    rows: dict[str, CatalogRow] = field(default_factory=dict)  # every recoverable folded row
    indexed: int = 0  # rows the current index serves
    generation: int = 0  # highest generation seen anywhere on the store
    unreferenced: list[str] = field(default_factory=list)  # partition and run files the manifest does not name

    @property
    def needs_rebuild(self) -> bool:
        return bool(self.catalog) or self.indexed < len(self.rows)


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


def _scan(cat: Catalog, run: RunInfo, problems: list[str]) -> list[CatalogRow]:
    try:
        return list(cat.runs.scan(run))
    except (FileNotFoundError, IntegrityError) as exc:
        problems.append(f"{cat.loc.path(run.key)}: {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'}")
        return []


def _read(cat: Catalog, path: str, problems: list[str]) -> list[CatalogRow]:
    try:
        return parse_rows(path, cat.loc.fs.cat_file(path))
    except (FileNotFoundError, IntegrityError) as exc:
        problems.append(f"{path}: {'missing' if isinstance(exc, FileNotFoundError) else 'unreadable'}")
        return []


def diagnose(arc: Archive) -> Diagnosis:
    """Check the manifest, every partition it names, every folded copy and every data object."""
    cat, diag = arc.catalog, Diagnosis()
    index: dict[str, CatalogRow] = {}
    gens = cat.manifests.generations()
    manifest = None
    if gens:
        try:
            manifest = cat.manifests.read(gens[-1])
        except IntegrityError as exc:
            diag.catalog.append(str(exc))
    folded = cat.folded_names()
    if manifest is None and folded and not diag.catalog:
        diag.catalog.append("the catalog manifest is missing (catalog/manifests/ is empty)")
    referenced = set()
    if manifest is not None:
        for key in manifest.files.values():
            referenced.add(cat.loc.path(key))
            index.update((row.id, row) for row in _read(cat, cat.loc.path(key), diag.catalog))
        for run in reversed(manifest.runs):  # oldest first: newer rows win
            referenced.add(cat.loc.path(run.key))
            index.update((row.id, row) for row in _scan(cat, run, diag.catalog))
    files = _index_files(cat, "index", PARTITION_FILE)
    run_files = _index_files(cat, "runs", RUN_FILE)
    ignored: list[str] = []
    for _gen, path in files:
        diag.rows.update((row.id, row) for row in _read(cat, path, ignored))
    for run in _runs_named(cat, gens):
        diag.rows.update((row.id, row) for row in _scan(cat, run, ignored))
    for name in folded:
        diag.rows.update((row.id, row) for row in _read(cat, cat.folded_path(name), diag.catalog))
    diag.indexed = sum(1 for i in diag.rows if i in index)
    if diag.indexed < len(diag.rows):
        diag.catalog.append(f"{len(diag.rows) - diag.indexed} compacted row(s) are not in the current index")
    diag.generation = max([*gens, *(g for g, _ in files), *(g for g, _ in run_files), 0])
    diag.unreferenced = [p for _g, p in [*files, *run_files] if p not in referenced]
    recent: dict[str, CatalogRow] = {}
    for name in cat.batch_names():
        recent.update({r.id: r for r in _read(cat, cat.batch_path(name), diag.catalog)})
    diag.data = _missing_data(arc, [*{**diag.rows, **index, **recent}.values()])
    return diag


def _missing_data(arc: Archive, rows: list[CatalogRow]) -> list[str]:
    """One line per row whose latent shard, stored copy, pixel copy or PNG metadata object is
    missing or too short on the store."""
    fs, listed, out = arc.loc.fs, {}, []

    def present(folder: str) -> dict[str, int]:
        if folder not in listed:
            try:
                listed[folder] = {p.rstrip("/"): int(i.get("size") or 0) for p, i in fs.find(folder, detail=True).items()}
            except FileNotFoundError:
                listed[folder] = {}
        return listed[folder]

    for row in sorted(rows, key=lambda r: r.id):
        if row.status == "latent" and row.bucket is not None and row.index is not None:
            key = arc.shard_key(row.bucket, row.index // arc.shard_size)
            if arc.loc.path(key) not in present(arc.loc.path(arc.shards_folder(row.bucket))):
                out.append(f"{row.id}: latent shard {key} is missing")
        for what, ref in row.object_refs():
            if ref.size:
                size = present(arc.loc.path(ref.key.split("/", 1)[0])).get(arc.loc.path(ref.key))
                if size is None or size < ref.offset + ref.size:
                    out.append(f"{row.id}: {what} object {ref.key} is missing or truncated")
    return out


def _first_slot(cat: Catalog) -> int:
    """Where readers start in the commit log when the manifest that said so is lost: after the
    newest fence (one LIST, then reads from the newest slot back): the slots below it were
    folded, so their rows are in the folded copies this repair reads; 0 without a fence."""
    try:
        names = cat.loc.fs.ls(cat.loc.path("catalog", "log"), detail=False)
    except FileNotFoundError:
        return 0
    for seq in sorted((int(m.group(1)) for n in names if (m := SLOT_NAME.search(n))), reverse=True):
        try:
            slot = read_slot(cat.loc, seq)
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
    rows = [diag.rows[i] for i in sorted(diag.rows)]
    run = write_run(loc, run_key(generation), iter(rows), level=level_for(len(rows)))
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
