"""One object's reads in the access statistics (`Access`): total, last access, and the
per-day buckets that say "how often was it read lately".

A total count and a last-access time cannot tell 20 reads this week from 20 reads last
year and one yesterday, so each object's reads are also kept per UTC day (day number =
whole days since the Unix epoch). A day keeps log objects small: a flush covers one
`access_flush_s` interval, so a log holds one bucket per object (two across midnight),
and a generation holds at most `retention + 1` buckets per object: `retained` folds the
older ones into the total only. A window of W days counts the buckets of every UTC day
that overlaps the last W days, so up to one day more than W at the window's old end.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from lbdask.errors import ConfigError

DAY = 86400.0
#: (UTC day number, reads that day), ascending by day, no zero counts.
Days = tuple[tuple[int, int], ...]
#: Days of per-day buckets a folded generation keeps when nothing else is configured
#: (`worker.access_retention_days` of configs/serve.yaml).
DEFAULT_RETENTION_DAYS = 31


def day_of(when: float) -> int:
    """The UTC day number of the unix time `when`."""
    return math.floor(when / DAY)


def merge_days(a: Days, b: Days) -> Days:
    """Both buckets summed day by day."""
    if not b:
        return a
    if not a:
        return b
    total = dict(a)
    for day, n in b:
        total[day] = total.get(day, 0) + n
    return tuple(sorted(total.items()))


def retained(days: Days, newest_day: int, retention_days: int) -> Days:
    """The buckets of the `retention_days` days before `newest_day` and that day itself."""
    first = newest_day - retention_days
    return days if not days or days[0][0] >= first else tuple(d for d in days if d[0] >= first)


def window(now: float, window_days: float) -> tuple[int, int]:
    """First and last UTC day of the window of `window_days` days that ends at `now`."""
    return day_of(now - window_days * DAY), day_of(now)


def reads_in(days: Iterable[tuple[int, int]], first: int, last: int) -> int:
    """Reads in the buckets of the days `first` ... `last`."""
    return sum(n for day, n in days if first <= day <= last)


def check_window(name: str, window_days: float, retention_days: int) -> None:
    """A window longer than the retention would miss the folded reads: ConfigError."""
    if window_days < 0:
        raise ConfigError(f"{name} must be at least 0, not {window_days}")
    if math.ceil(window_days) > retention_days:
        raise ConfigError(f"{name} ({window_days:g}) is longer than worker.access_retention_days ({retention_days}) "
                          f"of configs/serve.yaml: reads older than that are kept as totals only")


class Access(NamedTuple):
    """How often one object was read, when last (unix seconds), and how often per UTC day.

    `days` holds the retained days only: `count` minus their sum is the reads older than
    the retention, or of a format-1 generation, whose day is unknown. A NamedTuple, not a
    frozen dataclass: loading and folding build one per id, and its constructor is 3x faster.
    """

    count: int
    last_access: float
    days: Days = ()

    @classmethod
    def read_at(cls, when: float, n: int = 1) -> Access:
        """`n` reads at `when`."""
        return cls(n, when, ((day_of(when), n),))

    def merge(self, other: Access) -> Access:
        return Access(self.count + other.count, max(self.last_access, other.last_access),
                      merge_days(self.days, other.days))

    def reads_within(self, now: float, window_days: float) -> int:
        """Reads in the UTC days overlapping the `window_days` days before `now`."""
        return reads_in(self.days, *window(now, window_days))


def merge_into(total: dict[str, Access], more: Mapping[str, Access]) -> None:
    """Add `more` to `total` in place: counts summed, last access the latest."""
    for image_id, access in more.items():
        old = total.get(image_id)
        total[image_id] = access if old is None else old.merge(access)
