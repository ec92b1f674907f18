"""Index generations: immutable manifest objects, each created at most once (compare-and-swap).

Generation G lives in `catalog/manifests/<G, 10 digits>.json` and is never rewritten.
The current index is the highest generation present. A compactor that read generation G
commits by creating G+1 exclusively (`put_exclusive`); if another compactor created it
first the attempt lost and starts over. See docs/archive-format.md.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from lbdask.archive.objects import put_exclusive, remove_quietly
from lbdask.errors import IntegrityError
from lbdask.storage import Location

NAME = re.compile(r"^(\d{10})\.json$")
#: Where archives written before compare-and-swap compaction kept their manifest.
LEGACY = ("catalog", "index", "manifest.json")


@dataclass
class Manifest:
    """One index generation: the file of each non-empty partition, and the batches it folded."""

    generation: int = 0
    partitions: int = 256
    files: dict[int, str] = field(default_factory=dict)  # partition -> path relative to the root
    folded: list[str] = field(default_factory=list)  # batch ids this generation folded in

    def to_json(self) -> bytes:
        files = {str(k): v for k, v in sorted(self.files.items())}
        return json.dumps({"generation": self.generation, "partitions": self.partitions, "files": files,
                           "folded": self.folded}, indent=1).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(blob)
        return cls(int(data["generation"]), int(data["partitions"]), {int(k): str(v) for k, v in data["files"].items()},
                   [str(b) for b in data.get("folded", [])])


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
        blob = self.loc.fs.cat_file(path)
        try:
            manifest = Manifest.from_json(blob)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"catalog manifest {path} is unreadable ({type(exc).__name__}): "
                                 f"run `lbdask repair {self.loc.url}`") from None
        if manifest.generation != generation:
            raise IntegrityError(f"catalog manifest {path} says generation {manifest.generation}")
        with self._lock:
            self._parsed[generation] = manifest
        return manifest

    def latest(self) -> Manifest | None:
        """The highest generation, else an archive's pre-compare-and-swap manifest, else None."""
        gens = self.generations()
        return self.read(gens[-1]) if gens else self.legacy()

    def legacy(self) -> Manifest | None:
        """The one mutable `catalog/index/manifest.json` of archives written before generations
        became immutable objects: read as it is, superseded by the first new generation."""
        if self._no_legacy:
            return None
        try:
            return Manifest.from_json(self.loc.fs.cat_file(self.loc.path(*LEGACY)))
        except FileNotFoundError:
            self._no_legacy = True
            return None

    def create(self, manifest: Manifest) -> bool:
        """Commit `manifest` as its generation; False if that generation already exists."""
        return put_exclusive(self.loc, self.path(manifest.generation), manifest.to_json())

    def prune(self, below: int) -> None:
        """Delete generations older than `below` (readers that still hold one retry)."""
        remove_quietly(self.loc, [self.path(g) for g in self.generations() if g < below])
