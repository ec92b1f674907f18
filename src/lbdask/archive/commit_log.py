"""The commit log: one small object per announced batch at consecutive slot numbers, so
readers find recent commits by probing the next slot instead of listing `catalog/batches/`.

Slot `n` is `catalog/log/<n, 12 digits>.json`, created exclusively (`put_exclusive`), holding
`{"batch": id}` (a commit) or `{"fence": G}` (compaction G's mark: every slot below it was
folded into generation G, whose `log_next` is the fence's slot + 1). Slots are never
deleted (one ~20-byte object per batch, like its folded copy), so the slots present are
0 up to the first absent one, contiguous: a writer claims the first free slot at or after
its cursor, and a free slot is always the end of the log. A writer whose cursor a
compaction passed therefore fails its first try and moves on, without asking whether it
was stale; a reader meets the fence of every compaction after its view. See
docs/archive-format.md "Catalog (LSM layout)".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from lbdask.archive.objects import put_exclusive
from lbdask.archive.reads import present, read_object
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: A slot object's name (its number) at the end of a listed path.
SLOT_NAME = re.compile(r"/log/(\d{12})\.json$")


@dataclass(frozen=True)
class Slot:
    """One log entry: a committed batch's announcement, or a compaction's fence."""

    seq: int
    batch: str | None = None
    fence: int | None = None

    def to_json(self) -> bytes:
        return json.dumps({"batch": self.batch} if self.batch is not None else {"fence": self.fence}).encode()


def slot_path(loc: Location, seq: int) -> str:
    return loc.path("catalog", "log", f"{seq:012d}.json")


def read_slot(loc: Location, seq: int) -> Slot | None:
    """Slot `seq` (one GET), None when it is absent; IntegrityError naming it when unreadable."""
    path = slot_path(loc, seq)
    try:
        blob = read_object(loc, path)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(blob)
        if "batch" in data:
            return Slot(seq, batch=str(data["batch"]))
        return Slot(seq, fence=int(data["fence"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"catalog log slot {path} is unreadable ({type(exc).__name__})") from None


def first_absent(loc: Location, start: int) -> int:
    """The first absent slot at or after `start` (HEADs: doubling steps, then bisection)."""
    if not present(loc, slot_path(loc, start)):
        return start
    lo, step = start, 1  # lo is present
    while present(loc, slot_path(loc, lo + step)):
        lo, step = lo + step, step * 2
    hi = lo + step  # absent
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if present(loc, slot_path(loc, mid)) else (lo, mid)
    return hi


def claim(loc: Location, cursor: int, entry: Slot) -> int:
    """Create `entry` at the first free slot at or after `cursor` (one exclusive create when
    `cursor` is free); returns that slot."""
    seq = cursor
    while not put_exclusive(loc, slot_path(loc, seq), entry.to_json()):
        seq = first_absent(loc, seq + 1)
    return seq
