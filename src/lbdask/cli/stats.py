"""`lbdask stats DEST [--top N] [--window-days N] [--json]`: hottest and coldest objects with
their reads in total and within a recent window, and the access-age histogram.

Counts come from the archive's access statistics (src/lbdask/access/log.py, written by the
serving workers); the catalog says which objects exist, so objects never read show up as
the coldest and as their own histogram bucket.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from lbdask.errors import ConfigError
from lbdask.storage import open_location, parse_storage_options

#: Catalog statuses of readable objects (what serving reads count).
READABLE = ("latent", "kept", "lossy")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("stats", help="access statistics: hottest, coldest, access-age histogram",
                              description="Show the per-object access statistics the serving workers record.")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--top", type=int, default=10, metavar="N", help="objects in the hottest and coldest lists (default 10)")
    p.add_argument("--window-days", type=float, metavar="N",
                   help="also count the reads within the last N days (default: promote.window_days of configs/retier.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def _when(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def gather(dest: str, storage_options: dict, top: int, now: float, window_days: float) -> dict:
    """Everything `lbdask stats` shows, as one JSON-ready dict; reads within `window_days`
    count the UTC days that overlap the window (src/lbdask/access/days.py). One pass over the
    catalog: memory follows the access statistics and `top`, not the number of objects."""
    from lbdask.access.log import AGE_BUCKETS, NEVER, age_bucket, coldest, hottest, load_access
    from lbdask.archive import Archive  # zarr
    from lbdask.archive.objects import store_errors

    arc = Archive.open(dest, storage_options=storage_options)
    with store_errors(dest):
        stats = load_access(open_location(dest, storage_options))
    known: dict = {}  # the counted objects the catalog holds
    ages = dict.fromkeys([label for label, _ in AGE_BUCKETS] + [NEVER], 0)

    def readable() -> Iterator[str]:
        for row in arc.rows():
            if row.status in READABLE:
                access = stats.get(row.id)
                if access is not None:
                    known[row.id] = access
                ages[age_bucket(access, now)] += 1
                yield row.id

    cold = coldest(stats, readable(), top)

    def entry(image_id, access):
        return {"id": image_id, "count": access.count if access else 0,
                "window_reads": access.reads_within(now, window_days) if access else 0,
                "last_access": _when(access.last_access) if access else None,
                "age_s": round(now - access.last_access, 1) if access else None}

    return {"dest": dest, "now": _when(now), "objects": sum(ages.values()), "accessed": len(known),
            "reads": sum(a.count for a in known.values()), "window_days": window_days,
            "window_reads": sum(a.reads_within(now, window_days) for a in known.values()),
            "not_in_catalog": len(stats) - len(known),
            "hottest": [entry(i, a) for i, a in hottest(known, top)],
            "coldest": [entry(i, a) for i, a in cold],
            "age_histogram": [{"age": label, "objects": n} for label, n in ages.items()]}


def run(args: argparse.Namespace) -> int:
    from lbdask.tiering.policy import load_policy

    if args.top < 0:
        raise ConfigError(f"--top must be >= 0, got {args.top}")
    if args.window_days is not None and args.window_days < 0:
        raise ConfigError(f"--window-days must be >= 0, got {args.window_days:g}")
    # Not checked against worker.access_retention_days (configs/serve.yaml loads the cache
    # modules, too slow a start for a report): a longer window counts the retained days only.
    window = load_policy().promote.window_days if args.window_days is None else args.window_days
    s = gather(args.dest, parse_storage_options(args.storage_options), args.top, time.time(), window)
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    out = sys.stdout
    days = f"{s['window_days']:g} d"
    out.write(f"access statistics of {s['dest']} at {s['now']}: {s['objects']} objects, {s['accessed']} read "
              f"at least once, {s['reads']} reads, {s['window_reads']} in the last {days}\n")
    if s["not_in_catalog"]:
        out.write(f"({s['not_in_catalog']} counted ids are not in the catalog any more; left out)\n")
    for title, rows in (("hottest", s["hottest"]), ("coldest", s["coldest"])):
        out.write(f"\n{title}:\n  reads\t{days}\tlast read (UTC)\t\tage\tid\n")
        for r in rows:
            last = r["last_access"] or "never\t\t"
            age = _age(r["age_s"]) if r["age_s"] is not None else "-"
            out.write(f"  {r['count']}\t{r['window_reads']}\t{last}\t{age}\t{r['id']}\n")
    out.write("\nobjects by time since the last read:\n")
    width = max(1, max((b["objects"] for b in s["age_histogram"]), default=1))
    for b in s["age_histogram"]:
        bar = "#" * round(40 * b["objects"] / width)
        out.write(f"  {b['age']:>10}  {b['objects']:>8}  {bar}\n")
    return 0
