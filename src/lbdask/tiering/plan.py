"""Decide what a re-tiering run moves, from the catalog, access statistics and the policy.

A plan is data (kinds -> ids) and never touches the archive: `lbdask retier` without
`--apply` prints it, `--plan-out` writes it as JSON. Applying re-checks every object
against its current row (`moves.still_applies`), so a plan that is stale, or half
applied before a crash, is finished and never done twice.
"""
from __future__ import annotations

import dataclasses
import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lbdask.access.days import DAY, Access
from lbdask.archive.rows import CatalogRow
from lbdask.tiering.policy import RetierPolicy

#: Kinds of move, in the order a run applies them.
KINDS = ("demote", "convert", "reencode", "promote", "unpromote", "quarantine", "purge", "prewarm")
#: Kept reasons decided from the header alone: no latent gate can change them.
STRUCTURAL = frozenset({"transparency", "palette", "greyscale", "16-bit", "too-small", "too-large", "animated"})


@dataclass
class Plan:
    """Moves by kind (ids sorted), with the bytes each kind touches and the facts it used."""

    dest: str
    now: float
    policy: dict[str, Any]
    moves: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    bytes: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    notes: dict[str, int] = field(default_factory=dict)  # e.g. quarantined sources past retention kept
    #: kind -> id -> reads in the kind's window (promote, prewarm): why each was picked.
    window_reads: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, kind: str, image_id: str, nbytes: int, window_reads: int | None = None) -> None:
        self.moves[kind].append(image_id)
        self.bytes[kind] += int(nbytes)
        if window_reads is not None:
            self.window_reads.setdefault(kind, {})[image_id] = window_reads

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.moves.values())

    def to_json(self) -> dict[str, Any]:
        return {"dest": self.dest, "now": self.now, "policy": self.policy, "notes": dict(self.notes),
                "moves": {k: {"count": len(self.moves[k]), "bytes": self.bytes[k], "ids": sorted(self.moves[k])}
                          | ({"window_reads": dict(sorted(self.window_reads[k].items()))} if k in self.window_reads else {})
                          for k in KINDS}}

    def render(self, verbose: bool = False) -> str:
        lines = [f"retier plan for {self.dest}: {self.total} move(s)"]
        for kind in KINDS:
            ids = self.moves[kind]
            lines.append(f"  {kind:<11}{len(ids):>7} object(s) {self.bytes[kind]:>14,} bytes")
            if verbose:
                reads = self.window_reads.get(kind, {})
                lines += [f"    {i}" + (f"  ({reads[i]} reads in window)" if i in reads else "") for i in sorted(ids)]
        lines += [f"  note: {n} x {what}" for what, n in sorted(self.notes.items()) if n]
        return "\n".join(lines)


def age_days(usage: Access | None, now: float, created: float, unseen_is_cold: bool) -> float:
    """Days since the last recorded read; an object never read counts from the archive's
    creation when `unseen_is_cold`, else as read just now."""
    if usage is None:
        return (now - created) / DAY if unseen_is_cold else 0.0
    return max(0.0, (now - usage.last_access) / DAY)


def demotable(row: CatalogRow, floor: float) -> bool:
    """A kept copy that a latent gate at `floor` dB may replace (not decided by its header,
    not refused by a gate at this floor or a lower one before)."""
    if row.status != "kept" or (row.reason or "") in STRUCTURAL:
        return False
    return row.demote_floor is None or floor < row.demote_floor


def plan_moves(dest: str, rows: Iterable[CatalogRow], usage: Mapping[str, Access], policy: RetierPolicy, now: float,
               created: float, demote_floor: float, sources: Mapping[str, int] | None = None,
               quarantined: Iterable[tuple[str, float]] = (), reencode_from: str | None = None) -> Plan:
    """The moves `policy` asks for at time `now` (seconds since the epoch), in one pass over
    `rows` (each id once, as `Archive.rows()` yields them): memory follows the moves, not the rows.

    `reencode_from`: the fingerprint of model X whose latents a re-encode moves to model Y
    (policy `reencode.from`, resolved against the archive's model table), or None.

    `sources`: id -> size of the files under source_cleanup.source (None: not listed);
    `quarantined`: (path, quarantined-at) of files in the quarantine prefix.
    """
    plan = Plan(dest, now, dataclasses.asdict(policy) | {"demote_floor": demote_floor})

    def planned(rows: Iterable[CatalogRow]) -> Iterator[CatalogRow]:
        for row in rows:
            age = age_days(usage.get(row.id), now, created, policy.unseen_is_cold)
            plan_row(plan, row, usage.get(row.id), age, policy, demote_floor, reencode_from)
            if sources is not None and quarantinable(row, age, policy, sources):
                plan.add("quarantine", row.id, row.source_size)
            yield row

    if policy.prewarm.enabled:  # the ranking takes the same single pass
        for row, recent in predicted_hot(planned(rows), usage, policy, now):
            plan.add("prewarm", row.id, row.stored_bytes, recent)
    else:
        deque(planned(rows), maxlen=0)
    clean = policy.source_cleanup
    for path, since in quarantined:
        if (now - since) / DAY >= clean.retention_days:
            if clean.delete_after_retention:
                plan.add("purge", path, 0)
            else:
                plan.notes["quarantined past retention, kept (delete_after_retention: false)"] = \
                    plan.notes.get("quarantined past retention, kept (delete_after_retention: false)", 0) + 1
    for kind in KINDS:
        if kind != "prewarm":  # prewarm keeps its ranking, hottest first
            plan.moves[kind].sort()
    return plan


def plan_row(plan: Plan, row: CatalogRow, use: Access | None, age: float, policy: RetierPolicy, demote_floor: float,
             reencode_from: str | None) -> None:
    """The demote, convert, re-encode, promote and unpromote moves of one row."""
    pro = policy.promote
    if policy.demote.enabled and age >= policy.demote.cold_days and demotable(row, demote_floor):
        plan.add("demote", row.id, row.stored_bytes)
    elif (policy.convert.enabled and row.status == "kept" and row.kept_format in (None, "png")
          and row.kept_note is None and row.original is not None):
        plan.add("convert", row.id, row.stored_bytes)
    if reencode_from is not None and row.status == "latent" and row.model_fingerprint == reencode_from:
        plan.add("reencode", row.id, row.stored_bytes)  # its pixel copy goes with its old latent
    elif pro.enabled and row.status in ("latent", "lossy"):
        # Hot: min_reads within the window, and not cold by unpromote's measure (a window
        # counts whole UTC days, so its oldest read may be a day older than window_days).
        recent = use.reads_within(plan.now, pro.window_days) if use is not None else 0
        if row.pixel is None and recent >= pro.min_reads and age < pro.cold_days:
            plan.add("promote", row.id, row.stored_bytes, recent)
        elif row.pixel is not None and age >= pro.cold_days:
            plan.add("unpromote", row.id, row.pixel.size)


def quarantinable(row: CatalogRow, age: float, policy: RetierPolicy, sources: Mapping[str, int]) -> bool:
    """Whether the source file of `row` is cold enough, stored and unchanged, so that it may move to quarantine."""
    clean = policy.source_cleanup
    return (clean.enabled and row.id in sources and age >= clean.cold_days
            and row.status in ("latent", "kept", "lossy", "failed") and sources[row.id] == row.source_size)


def predicted_hot(rows: Iterable[CatalogRow], usage: Mapping[str, Access], policy: RetierPolicy,
                  now: float) -> list[tuple[CatalogRow, int]]:
    """The `prewarm.top` readable objects among `rows` with the most reads within
    `prewarm.window_days` (recent and frequent: what the next day most likely reads), with
    those reads; one pass over `rows`, holding `prewarm.top` of them."""
    days = policy.prewarm.window_days

    def candidates() -> Iterator[tuple[tuple[int, float, str], CatalogRow, int]]:
        for row in rows:
            use = usage.get(row.id)
            if use is not None and row.status in ("latent", "kept", "lossy") and (n := use.reads_within(now, days)) > 0:
                yield (-n, -use.last_access, row.id), row, n

    return [(row, n) for _, row, n in heapq.nsmallest(policy.prewarm.top, candidates(), key=lambda c: c[0])]
