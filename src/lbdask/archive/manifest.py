"""Index generations: immutable manifest objects, each created at most once (compare-and-swap).

Generation G lives in `catalog/manifests/<G, 10 digits>.json` and is never rewritten.
The current index is the highest generation present. A compactor that read generation G
commits by creating G+1 exclusively (`put_exclusive`); if another compactor created it
first the attempt lost and starts over. After a successful commit the compactor also
overwrites `catalog/manifests/latest.json` with a byte copy of its manifest: a hint that
lets readers find the latest generation without a LIST (read it, then probe G+1, G+2...).
Generations are deleted in ascending order, so a generation still present has every newer
one present too. See docs/archive-format.md.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbdask.archive.objects import put_atomic, put_exclusive, remove_quietly
from lbdask.archive.reads import present, read_object
from lbdask.errors import IntegrityError
from lbdask.storage import Location

if TYPE_CHECKING:
    from lbdask.archive.runs import RunInfo

NAME = re.compile(r"^(\d{10})\.json$")
#: The hint: a copy of the newest manifest, overwritten after each commit (it may lag).
HINT = "latest.json"
#: Where archives written before compare-and-swap compaction kept their manifest.
LEGACY = ("catalog", "index", "manifest.json")


@dataclass
class Manifest:
    """One index generation: its sorted runs (v2) or hash partitions (v1), the first log slot
    not folded into it, and the batches it folded."""

    generation: int = 0
    partitions: int = 256  # v1 only
    files: dict[int, str] = field(default_factory=dict)  # v1 only: partition -> path relative to the root
    folded: list[str] = field(default_factory=list)  # batch ids this generation folded in
    version: int = 2  # 1 when read from a manifest without "version"
    runs: list[RunInfo] = field(default_factory=list)  # newest first
    log_next: int = 0  # every log slot below it is folded
    #: Written by a compactor that keeps log slots (2026-12-07 on): every newer generation has
    #: a fence slot at or after `log_next`, so a reader walking the log from there meets it;
    #: False when read from a manifest without it (older writers deleted slots below their fence).
    slots_kept: bool = True

    def to_json(self) -> bytes:
        if self.version == 1:  # a v1 catalog keeps its layout until converted (log_next: ignored by old readers)
            files = {str(k): v for k, v in sorted(self.files.items())}
            return json.dumps({"generation": self.generation, "partitions": self.partitions, "files": files,
                               "folded": self.folded, "log_next": self.log_next}, indent=1).encode()
        return json.dumps({"version": 2, "generation": self.generation, "runs": [r.to_json() for r in self.runs],
                           "log_next": self.log_next, "folded": self.folded, "slots_kept": self.slots_kept},
                          indent=1).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(blob)
        folded = [str(b) for b in data.get("folded", [])]
        if "version" not in data:
            return cls(int(data["generation"]), int(data["partitions"]),
                       {int(k): str(v) for k, v in data["files"].items()}, folded, 1, [], int(data.get("log_next", 0)),
                       False)
        if data["version"] != 2:
            raise ValueError(f"manifest version {data['version']}")
        runs = [_run_info(r) for r in data["runs"]]
        return cls(int(data["generation"]), folded=folded, version=2, runs=runs, log_next=int(data["log_next"]),
                   slots_kept=data.get("slots_kept") is True)


def _run_info(data: dict[str, Any]) -> RunInfo:
    from lbdask.archive.runs import RunInfo

    return RunInfo.from_json(data)


class Manifests:
    """List, read (cached: they are immutable), create exclusively and prune manifest objects."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self._parsed: dict[int, Manifest] = {}
        self._lock = threading.Lock()
        self._no_legacy = False  # no lbdask version writes the legacy manifest: absent once, absent for good

    def path(self, generation: int) -> str:
        return self.loc.path("catalog", "manifests", f"{generation:010d}.json")

    def generations(self) -> list[int]:
        """Generations present on the store, ascending (one LIST)."""
        d = self.loc.path("catalog", "manifests")
        self.loc.fs.invalidate_cache(d)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.loc.fs.ls(d, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(NAME.match, names) if m)

    def read(self, generation: int) -> Manifest:
        """One generation; FileNotFoundError if gone (pruned), IntegrityError if unreadable."""
        with self._lock:
            if generation in self._parsed:
                return self._parsed[generation]
        path = self.path(generation)
        manifest = self._parse(path, read_object(self.loc, path))
        if manifest.generation != generation:
            raise IntegrityError(f"catalog manifest {path} says generation {manifest.generation}")
        with self._lock:
            self._parsed[generation] = manifest
        return manifest

    def _parse(self, path: str, blob: bytes) -> Manifest:
        try:
            return Manifest.from_json(blob)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"catalog manifest {path} is unreadable ({type(exc).__name__}): "
                                 f"run `lbdask repair {self.loc.url}`") from None

    def latest(self) -> Manifest | None:
        """The highest generation, else an archive's pre-compare-and-swap manifest, else None (one LIST)."""
        gens = self.generations()
        return self.read(gens[-1]) if gens else self.legacy()

    def discover(self, known: int | None = None, walks_log: bool = False) -> Manifest | None:
        """The latest generation, without a LIST where possible: probe the generations after
        `known` (the caller's newest) or after the hint's until one is absent. Generations
        are deleted oldest first, so `known` or the hint's still being there proves nothing
        newer was pruned; when it is gone, and when there is no hint, one LIST.

        `walks_log`: the caller reads the log from the manifest's `log_next` on and follows
        the fences it meets (`catalog_view.Tracker`); then a hint whose generation keeps its
        slots is taken as it is, without probing (2 requests fewer): every newer generation,
        a pruned hint's included, has a fence there."""
        if known is not None:
            newest = self._probe_after(known)
            if newest is not None:
                return newest
            if known and present(self.loc, self.path(known)):
                return self.read(known)
        hint = self._hint()
        if hint is None:
            return None if known == 0 else self.latest()
        if walks_log and known is None and hint.version == 2 and hint.slots_kept:
            return self._remember(hint.generation, hint)
        newest = self._probe_after(hint.generation)
        if newest is not None:
            return newest
        if present(self.loc, self.path(hint.generation)):
            return self._remember(hint.generation, hint)
        return self.latest()

    def _probe_after(self, generation: int) -> Manifest | None:
        """The last of generation+1, +2, ... present (one GET each, the absent one included)."""
        newest = None
        while True:
            try:
                newest = self.read(generation + 1)
            except FileNotFoundError:
                return newest
            generation += 1

    def _remember(self, generation: int, hint: Manifest) -> Manifest:
        with self._lock:
            return self._parsed.setdefault(generation, hint)

    def hint_path(self) -> str:
        return self.loc.path("catalog", "manifests", HINT)

    def _hint(self) -> Manifest | None:
        path = self.hint_path()
        try:
            return self._parse(path, read_object(self.loc, path))
        except (FileNotFoundError, IntegrityError):  # a hint is only a hint: list instead
            return None

    def write_hint(self, manifest: Manifest) -> None:
        """Point readers at `manifest` (written after its commit; a reader checks it is still there)."""
        put_atomic(self.loc, self.hint_path(), manifest.to_json())

    def legacy(self) -> Manifest | None:
        """The one mutable `catalog/index/manifest.json` of archives written before generations
        became immutable objects: read as it is, superseded by the first new generation."""
        if self._no_legacy:
            return None
        try:
            return Manifest.from_json(read_object(self.loc, self.loc.path(*LEGACY)))
        except FileNotFoundError:
            self._no_legacy = True
            return None

    def create(self, manifest: Manifest) -> bool:
        """Commit `manifest` as its generation; False if that generation already exists."""
        return put_exclusive(self.loc, self.path(manifest.generation), manifest.to_json())

    def prune(self, below: int) -> None:
        """Delete generations older than `below`, oldest first (readers that still hold one retry)."""
        for g in self.generations():
            if g < below:
                remove_quietly(self.loc, [self.path(g)])
