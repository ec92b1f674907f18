"""Find what an archive lost and rebuild its catalog index from what is still on the store.

Sources of rows, in the order a later one wins: every index partition file on the store
(older generations and attempts that never committed included), then the folded copy of
every compacted batch (`catalog/folded/`). Batch objects not yet folded stay as they are. A
rebuild writes every partition afresh and commits it as a new manifest generation with
the same compare-and-swap as compaction, so it is idempotent and safe to kill and rerun.
Latent shards and stored copies cannot be rebuilt: rows pointing at a missing one are
reported by id. See docs/archive-format.md for what is recoverable.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from lbdask.archive.catalog import BATCH_SUFFIX, Catalog, parse_rows, partition_of
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import put_atomic, remove_quietly
from lbdask.archive.rows import CatalogRow, dump_rows
from lbdask.archive.store import Archive
from lbdask.errors import IntegrityError

SLOT_FILE = re.compile(r"/log/(\d{12})\.json$")
PARTITION_FILE = re.compile(r"/index/g(\d+)(?:-[0-9a-f]+)?/p(\d+)\.jsonl\.gz$")


@dataclass
class Diagnosis:
    """What is wrong with an archive and what a rebuild would restore."""

    catalog: list[str] = field(default_factory=list)  # missing/unreadable catalog objects
    data: list[str] = field(default_factory=list)  # rows whose latent shard or stored copy is gone
    rows: dict[str, CatalogRow] = field(default_factory=dict)  # every recoverable folded row
    indexed: int = 0  # rows the current index serves
    generation: int = 0  # highest generation seen anywhere on the store
    unreferenced: list[str] = field(default_factory=list)  # partition files no manifest names

    @property
    def needs_rebuild(self) -> bool:
        return bool(self.catalog) or self.indexed < len(self.rows)


def _partition_files(cat: Catalog) -> list[tuple[int, str]]:
    """(generation, path) of every partition file on the store, oldest first."""
    try:
        found = cat.loc.fs.find(cat.loc.path("catalog", "index"))
    except FileNotFoundError:
        return []
    out = [(int(m.group(1)), p) for p in found if (m := PARTITION_FILE.search(p))]
    return sorted(out)


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
        for part, key in sorted(manifest.files.items()):
            referenced.add(cat.loc.path(key))
            for row in _read(cat, cat.loc.path(key), diag.catalog):
                index[row.id] = row
    files = _partition_files(cat)
    ignored: list[str] = []
    for _gen, path in files:
        for row in _read(cat, path, ignored):
            diag.rows[row.id] = row
    for name in folded:
        for row in _read(cat, cat.folded_path(name), diag.catalog):
            diag.rows[row.id] = row
    diag.indexed = sum(1 for i in diag.rows if i in index)
    if diag.indexed < len(diag.rows):
        diag.catalog.append(f"{len(diag.rows) - diag.indexed} compacted row(s) are not in the current index")
    diag.generation = max([*gens, *(g for g, _ in files), 0])
    diag.unreferenced = [p for _g, p in files if p not in referenced]
    recent: dict[str, CatalogRow] = {}
    for name in cat.batch_names():
        recent.update({r.id: r for r in _read(cat, cat.batch_path(name), diag.catalog)})
    diag.data = _missing_data(arc, [*{**diag.rows, **index, **recent}.values()])
    return diag


def _missing_data(arc: Archive, rows: list[CatalogRow]) -> list[str]:
    """One line per row whose latent shard or stored-copy object is not on the store."""
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
        elif row.original is not None and row.original.size:
            size = present(arc.loc.path("originals")).get(arc.loc.path(row.original.key))
            if size is None or size < row.original.offset + row.original.size:
                out.append(f"{row.id}: kept original object {row.original.key} is missing or truncated")
    return out


def _first_slot(cat: Catalog) -> int:
    """Where readers start in the commit log when the manifest that said so is lost: the
    oldest slot present (one LIST; slots below a log_next are deleted oldest first)."""
    try:
        names = cat.loc.fs.ls(cat.loc.path("catalog", "log"), detail=False)
    except FileNotFoundError:
        return 0
    seqs = [int(m.group(1)) for n in names if (m := SLOT_FILE.search(n))]
    return min(seqs, default=0)


def rebuild(arc: Archive, diag: Diagnosis) -> Manifest:
    """Write every recoverable row into a new index generation and commit it (CAS)."""
    cat, loc = arc.catalog, arc.loc
    partitions, log_next = cat.default_partitions, None
    try:
        current = cat.manifests.latest()
        if current is not None:
            partitions, log_next = current.partitions, current.log_next
    except (IntegrityError, FileNotFoundError):
        pass
    by_part: dict[int, dict[str, CatalogRow]] = {}
    for row in diag.rows.values():
        by_part.setdefault(partition_of(row.id, partitions), {})[row.id] = row
    new = Manifest(diag.generation + 1, partitions, {}, [], version=1,
                   log_next=_first_slot(cat) if log_next is None else log_next)
    folder = f"catalog/index/g{new.generation:06d}-{uuid.uuid4().hex[:12]}"
    for part, rows in sorted(by_part.items()):
        key = f"{folder}/p{part:05d}{BATCH_SUFFIX}"
        put_atomic(loc, loc.path(key), dump_rows(rows[i] for i in sorted(rows)))
        new.files[part] = key
    if not cat.manifests.create(new):
        raise IntegrityError(f"another process committed catalog generation {new.generation} meanwhile: run repair again")
    cat.manifests.prune(below=new.generation)
    cat.manifests.write_hint(new)
    mine = {loc.path(k) for k in new.files.values()}
    remove_quietly(loc, [p for _g, p in _partition_files(cat) if p not in mine])  # the new index holds their rows
    return new
