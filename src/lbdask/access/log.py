"""Per-object access statistics in the archive: counts, last-access time and reads per UTC
day (src/lbdask/access/days.py), crash-safe.

Serving processes count reads in memory (`AccessLog.add`) and write what they counted as
one new immutable log object per flush (`access/logs/<stamp>-<writer>-<token>.json.gz`,
one atomic PUT or rename; never rewritten). `compact_access` folds the logs into a new
snapshot generation (`access/generations/<G>.json.gz`) created exclusively, the same
compare-and-swap as the catalog manifests, then deletes the folded logs and the older
generations. A crash at any point leaves whole objects only: at worst logs that the
latest generation already folded (it lists them, so they are not counted twice) and
stale generations. Losing the counts of an interval that was never flushed is accepted.
Objects written before the per-day buckets (format 1) still load: see `_access`.
See docs/archive-format.md ("Access statistics") for the argument in full.
"""
from __future__ import annotations

import gzip
import heapq
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lbdask.access.days import DEFAULT_RETENTION_DAYS, Access, day_of, merge_into, retained
from lbdask.archive.catalog import BATCH_ID
from lbdask.archive.compaction import COMPACT_ATTEMPTS
from lbdask.archive.objects import put_atomic, put_exclusive, remove_quietly
from lbdask.errors import InputError, IntegrityError, StoreError
from lbdask.storage import Location

FORMAT = 2
#: Format 1: `[count, last_access]` only, before the per-day buckets.
OLD_FORMAT = 1
SUFFIX = ".json.gz"
LOG_NAME = re.compile(r"^\d{20}-[A-Za-z0-9._-]+-[0-9a-f]{12}$")
GEN_NAME = re.compile(r"^(\d{10})\.json\.gz$")
#: Times a reader starts over when a compaction replaced what it was reading meanwhile.
READ_ATTEMPTS = 12


def _row(count: int, last: float, days: Iterable[tuple[int, int]]) -> list:
    """One id's counts as written: `[count, last_access, day, reads, day, reads, ...]` (flat: small)."""
    row = [count, last]
    for pair in days:
        row += pair
    return row


def _encode(payload: dict[str, Any], rows: Mapping[str, list]) -> bytes:
    body = {**payload, "format": FORMAT, "counts": dict(sorted(rows.items()))}
    return gzip.compress(json.dumps(body, separators=(",", ":")).encode(), mtime=0)


def _access(v: list, fmt: int, is_log: bool) -> Access:
    if fmt == FORMAT:  # the JSON types are the ones written; no conversions (load time of 1e6 ids)
        if len(v) % 2:
            raise ValueError("odd day counts")
        return Access(v[0], v[1], ((v[2], v[3]),) if len(v) == 4 else tuple(zip(v[2::2], v[3::2])))
    count, last = int(v[0]), float(v[1])
    # Format 1: a log holds one flush interval, so its reads count on the day of the last
    # one; a generation's totals span any time, so their day stays unknown (total only).
    return Access.read_at(last, count) if is_log else Access(count, last)


def _decode(path: str, blob: bytes, is_log: bool) -> tuple[dict[str, Any], dict[str, Access]]:
    """Payload and counts of an access object; IntegrityError naming it when unreadable."""
    try:
        body = json.loads(gzip.decompress(blob))
        fmt = body.get("format")
        if fmt not in (FORMAT, OLD_FORMAT):
            raise ValueError(f"format {fmt!r}")
        counts = {str(k): _access(v, fmt, is_log) for k, v in body.pop("counts").items()}
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise IntegrityError(f"access statistics object {path} is unreadable ({type(exc).__name__})") from None
    return body, counts


def _folder(loc: Location, kind: str) -> str:
    return loc.path("access", kind)


def _list(loc: Location, kind: str) -> list[str]:
    """Names (without suffix) in `access/<kind>/`, sorted; temporary files are skipped."""
    d = _folder(loc, kind)
    loc.fs.invalidate_cache(d)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in loc.fs.ls(d, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX))


def log_names(loc: Location) -> list[str]:
    """Flushed log objects present (folded or not)."""
    return [n for n in _list(loc, "logs") if LOG_NAME.match(n)]


def generations(loc: Location) -> list[int]:
    """Snapshot generations present, ascending."""
    return [int(n) for n in _list(loc, "generations") if GEN_NAME.match(n + SUFFIX)]


def _log_path(loc: Location, name: str) -> str:
    return loc.path("access", "logs", name + SUFFIX)


def _gen_path(loc: Location, generation: int) -> str:
    return loc.path("access", "generations", f"{generation:010d}{SUFFIX}")


@dataclass(frozen=True)
class Snapshot:
    """One generation: the counts of every log folded so far, and which logs that still
    existed when it was written it has folded (those must not be counted again)."""

    generation: int
    folded: frozenset[str]
    counts: dict[str, Access]


def _read_log(loc: Location, name: str) -> dict[str, Access]:
    path = _log_path(loc, name)
    return _decode(path, loc.fs.cat_file(path), is_log=True)[1]


def _read_snapshot(loc: Location, gens: list[int]) -> Snapshot:
    if not gens:
        return Snapshot(0, frozenset(), {})
    path = _gen_path(loc, gens[-1])
    body, counts = _decode(path, loc.fs.cat_file(path), is_log=False)
    if body.get("generation") != gens[-1]:
        raise IntegrityError(f"access statistics object {path} says generation {body.get('generation')!r}")
    return Snapshot(gens[-1], frozenset(body.get("folded", [])), counts)


class AccessLog:
    """Counts reads in memory (thread-safe) and flushes them as one immutable object."""

    def __init__(self, loc: Location, writer_id: str) -> None:
        if not BATCH_ID.match(writer_id):
            raise InputError(f"invalid access writer id {writer_id!r}: use letters, digits, '.', '_' and '-'")
        self.loc = loc
        self.writer_id = writer_id
        # id -> [last access, {day: reads}]: mutable, so that a read (on the serving path)
        # costs a few dict operations and no new Access.
        self._pending: dict[str, list] = {}
        self._lock = threading.Lock()

    def add(self, image_id: str, when: float | None = None) -> None:
        """Count one read of `image_id` at `when` (now by default)."""
        when = time.time() if when is None else float(when)
        day = day_of(when)
        with self._lock:
            entry = self._pending.get(image_id)
            if entry is None:
                self._pending[image_id] = [when, {day: 1}]
                return
            if when > entry[0]:
                entry[0] = when
            entry[1][day] = entry[1].get(day, 0) + 1

    def pending(self) -> int:
        """Ids counted since the last flush."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write the pending counts as one new object; returns how many ids it wrote.

        If the write fails the counts go back to pending (and the error is raised), so a
        later flush writes them; nothing is ever written twice.
        """
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        rows = {i: _row(sum(days.values()), last, sorted(days.items())) for i, (last, days) in taken.items()}
        name = f"{time.time_ns():020d}-{self.writer_id}-{uuid.uuid4().hex[:12]}"
        try:
            put_atomic(self.loc, _log_path(self.loc, name), _encode({"writer": self.writer_id}, rows))
        except BaseException:
            with self._lock:
                for image_id, (last, days) in taken.items():
                    entry = self._pending.setdefault(image_id, [last, {}])
                    entry[0] = max(entry[0], last)
                    for day, n in days.items():
                        entry[1][day] = entry[1].get(day, 0) + n
            raise
        return len(rows)


def load_access(loc: Location) -> dict[str, Access]:
    """Every flushed count, merged: the latest generation plus the logs it has not folded.

    The generation is read first and the logs listed after; if a newer generation was
    committed meanwhile (it may have deleted logs this read missed) the read starts over.
    """
    for attempt in range(READ_ATTEMPTS):
        try:
            gens = generations(loc)
            snap = _read_snapshot(loc, gens)
            logs = [_read_log(loc, n) for n in log_names(loc) if n not in snap.folded]
        except FileNotFoundError:  # a compaction pruned or folded what was listed
            logs = None
        if logs is not None and generations(loc)[-1:] == gens[-1:]:
            total = dict(snap.counts)
            for counts in logs:
                merge_into(total, counts)
            return total
        time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))
    raise StoreError(f"access statistics of {loc.url} kept changing during {READ_ATTEMPTS} reads; try again")


def compact_access(loc: Location, attempts: int = COMPACT_ATTEMPTS,
                   retention_days: int = DEFAULT_RETENTION_DAYS) -> dict[str, int]:
    """Fold every flushed log into a new generation; returns what the commit folded.

    The generation keeps the per-day buckets of `retention_days` days before the newest
    day read (`_retain`); older ones count in the totals only, so its size stays bounded.
    `stepped_back` is 1 when every attempt lost to other compactors (the logs stay and
    are counted by readers; a later compaction folds them).
    """
    for attempt in range(attempts):
        try:
            done = _attempt(loc, retention_days)
        except FileNotFoundError:  # another compactor removed what this one listed
            done = None
        if done is not None:
            return done
        time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 5)))
    return {"logs": 0, "ids": 0, "generation": (generations(loc) or [0])[-1], "stepped_back": 1}


def _retain(total: dict[str, Access], retention_days: int) -> dict[str, Access]:
    """`total` with the buckets before the retention dropped. The retention ends on the
    newest day read, or today by this process's clock if that is earlier (a writer whose
    clock runs ahead cannot make it drop recent buckets)."""
    if not total:
        return total
    newest = min(day_of(max(a.last_access for a in total.values())), day_of(time.time()))
    out = {}
    for image_id, a in total.items():
        days = retained(a.days, newest, retention_days)
        out[image_id] = a if days is a.days else Access(a.count, a.last_access, days)
    return out


def _attempt(loc: Location, retention_days: int) -> dict[str, int] | None:
    """One compaction attempt; None when another compactor committed first.

    The generation is read before the logs are listed: a log the generation folded and
    that is not listed any more was deleted for good, so it can leave the folded list.
    """
    old = _read_snapshot(loc, generations(loc))
    names = log_names(loc)
    fresh = [n for n in names if n not in old.folded]
    if not fresh:
        # What a crashed compactor left: logs `old` folded, generations it superseded.
        remove_quietly(loc, [_log_path(loc, n) for n in names])
        remove_quietly(loc, [_gen_path(loc, g) for g in generations(loc) if g < old.generation])
        return {"logs": 0, "ids": len(old.counts), "generation": old.generation, "stepped_back": 0}
    total = dict(old.counts)
    for name in fresh:
        merge_into(total, _read_log(loc, name))
    total = _retain(total, retention_days)
    generation = old.generation + 1
    blob = _encode({"generation": generation, "folded": names}, {k: _row(*a) for k, a in total.items()})
    if not put_exclusive(loc, _gen_path(loc, generation), blob):
        return None
    if generations(loc)[-1] != generation:
        # A newer generation exists: ours was either built upon or a stale number (its
        # earlier holder was pruned). Not knowing which, delete nothing and fold again.
        return None
    remove_quietly(loc, [_log_path(loc, n) for n in names])
    remove_quietly(loc, [_gen_path(loc, g) for g in generations(loc) if g < generation])
    return {"logs": len(fresh), "ids": len(total), "generation": generation, "stepped_back": 0}


def hottest(stats: Mapping[str, Access], n: int) -> list[tuple[str, Access]]:
    """The `n` most read ids, most recent first among equal counts."""
    return heapq.nsmallest(n, stats.items(), key=lambda kv: (-kv[1].count, -kv[1].last_access, kv[0]))


def coldest(stats: Mapping[str, Access], ids: Iterable[str], n: int) -> list[tuple[str, Access | None]]:
    """The `n` coldest of `ids`: never read first, then the longest since the last read
    (one pass over `ids`, holding `n` of them)."""
    return heapq.nsmallest(n, ((i, stats.get(i)) for i in ids),
                           key=lambda kv: (kv[1] is not None, kv[1].last_access if kv[1] else 0.0,
                                           kv[1].count if kv[1] else 0, kv[0]))


#: Access-age buckets of `lbdask stats`' histogram: (label, upper bound in seconds since the last read).
AGE_BUCKETS: tuple[tuple[str, float], ...] = (("< 1 h", 3600.0), ("1 h - 1 d", 86400.0), ("1 - 7 d", 7 * 86400.0),
                                              ("7 - 30 d", 30 * 86400.0), ("30 - 90 d", 90 * 86400.0),
                                              (">= 90 d", float("inf")))
NEVER = "never"


def age_bucket(access: Access | None, now: float) -> str:
    """The AGE_BUCKETS label of an object's last read, or NEVER."""
    if access is None:
        return NEVER
    age = max(0.0, now - access.last_access)
    return next(label for label, bound in AGE_BUCKETS if age < bound)

