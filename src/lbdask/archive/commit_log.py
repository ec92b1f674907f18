"""The commit log: one small object per announced batch at consecutive slot numbers, so
readers find recent commits by probing the next slot instead of listing `catalog/batches/`.

Slot `n` is created exclusively (`put_exclusive`), holding `{"batch": id}` (a commit) or
`{"fence": G}` (compaction G's mark: every slot below it was folded into generation G, whose
`log_next` is the fence's slot + 1). Where it lies depends on the archive's layout
(`CommitLog.fanned`): `catalog/log/<n // 4096, 8 digits>/<n, 12 digits>.json` (format
version 3: no folder holds more than SLOTS_PER_FOLDER slots), or `catalog/log/<n>.json`
(flat, versions 1 and 2). Slots are never deleted (one ~20-byte object per batch), so the
slots present are 0 up to the first absent one, contiguous: a writer claims the first free
slot at or after its cursor, and a free slot is always the end of the log. A writer whose
cursor a compaction passed therefore fails its first try and moves on, without asking
whether it was stale; a reader meets the fence of every compaction after its view. See
docs/archive-format.md "Catalog (LSM layout)".
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lbdask.archive.objects import put_exclusive
from lbdask.archive.reads import present, read_object
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: A slot object's name (its number) at the end of a listed path.
SLOT_NAME = re.compile(r"/(\d{12})\.json$")
#: A fan-out subfolder's name (the slot number divided by SLOTS_PER_FOLDER).
FOLDER_NAME = re.compile(r"/(\d{8})/?$")
#: Slots per subfolder of the fan-out layout: a folder's listing stays small however many
#: batches were committed (156,000 batches of 64 images, 10 M images: 39 subfolders).
SLOTS_PER_FOLDER = 4096


@dataclass(frozen=True)
class CommitLog:
    """Where an archive's log slots lie: `fanned` (format version 3) or flat (1 and 2)."""

    loc: Location
    fanned: bool = True


@dataclass(frozen=True)
class Slot:
    """One log entry: a committed batch's announcement, or a compaction's fence."""

    seq: int
    batch: str | None = None
    fence: int | None = None

    def to_json(self) -> bytes:
        return json.dumps({"batch": self.batch} if self.batch is not None else {"fence": self.fence}).encode()


def slot_path(log: CommitLog, seq: int) -> str:
    if log.fanned:
        return log.loc.path("catalog", "log", f"{seq // SLOTS_PER_FOLDER:08d}", f"{seq:012d}.json")
    return log.loc.path("catalog", "log", f"{seq:012d}.json")


def read_slot(log: CommitLog, seq: int) -> Slot | None:
    """Slot `seq` (one GET), None when it is absent; IntegrityError naming it when unreadable."""
    path = slot_path(log, seq)
    try:
        blob = read_object(log.loc, path)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(blob)
        if "batch" in data:
            return Slot(seq, batch=str(data["batch"]))
        return Slot(seq, fence=int(data["fence"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"catalog log slot {path} is unreadable ({type(exc).__name__})") from None


def first_absent(log: CommitLog, start: int) -> int:
    """The first absent slot at or after `start` (HEADs: doubling steps, then bisection)."""
    if not present(log.loc, slot_path(log, start)):
        return start
    lo, step = start, 1  # lo is present
    while present(log.loc, slot_path(log, lo + step)):
        lo, step = lo + step, step * 2
    hi = lo + step  # absent
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if present(log.loc, slot_path(log, mid)) else (lo, mid)
    return hi


def claim(log: CommitLog, cursor: int, entry: Slot) -> int:
    """Create `entry` at the first free slot at or after `cursor`; returns that slot. One
    exclusive create when `cursor` is free; when a concurrent writer took it, the next slot is
    tried at once (the usual race costs one more create, no HEAD); only a cursor further
    behind (a compaction passed it) searches for the end of the log."""
    seq = cursor
    while not put_exclusive(log.loc, slot_path(log, seq), entry.to_json()):
        seq = seq + 1 if seq == cursor else first_absent(log, seq + 1)
    return seq


def listed_slots(log: CommitLog) -> Iterator[int]:
    """The slot numbers present, newest first (LISTs: the flat log whole; in the fan-out
    layout the subfolders, then each one, newest first, as far as the caller reads)."""
    root = log.loc.path("catalog", "log")
    log.loc.fs.invalidate_cache(root)
    try:
        names = log.loc.fs.ls(root, detail=False)
    except FileNotFoundError:
        return
    folders = sorted((n for n in names if FOLDER_NAME.search(n)), reverse=True) if log.fanned else [root]
    for folder in folders:
        listed = names if folder == root else log.loc.fs.ls(folder, detail=False)
        yield from sorted((int(m.group(1)) for n in listed if (m := SLOT_NAME.search(n))), reverse=True)
