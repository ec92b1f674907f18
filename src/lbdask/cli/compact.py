"""`lbdask compact DEST`: fold committed batch objects into the catalog index (what migrate runs at its end).

It takes the archive's lease (`src/lbdask/archive/lease.py`) as a migration or repair does, so
it is refused with one line naming the job that holds DEST (the migration compacts at its
own end). Compaction itself stays safe beside other compactors: the new index generation
commits by compare-and-swap, and a compactor that keeps losing the race steps back without loss.
"""
from __future__ import annotations

import argparse

from lbdask.archive import Archive
from lbdask.archive.lease import hold
from lbdask.archive.objects import store_errors
from lbdask.storage import parse_storage_options


def dest_parser(subparsers: argparse._SubParsersAction, name: str, summary: str, doc: str) -> argparse.ArgumentParser:
    """A subcommand of DEST and `--storage-options` alone (compact, upgrade)."""
    p = subparsers.add_parser(name, help=summary, description=doc.split("\n\n")[0])
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return dest_parser(subparsers, "compact", "fold committed batches into the catalog index", __doc__)


def compact_held(arc: Archive, command: str) -> dict[str, int]:
    """`arc.compact()` under the archive's lease, held as `command`."""
    with store_errors(arc.url), hold(arc.loc, command):
        return arc.compact()


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, mode="a", storage_options=parse_storage_options(args.storage_options))
    done = compact_held(arc, "lbdask compact")
    if done.get("stepped_back"):
        print(f"other compactions kept committing first; stepped back at generation {done['generation']} "
              f"(nothing lost: run it again later)")
    elif done["batches"]:
        print(f"folded {done['batches']} batch(es), {done['rows']} row(s) into generation {done['generation']}")
    else:
        print(f"nothing to compact (generation {done['generation']})")
    return 0
