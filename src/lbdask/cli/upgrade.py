"""`lbdask upgrade DEST`: bring an archive written by an older lbdask to the current format.

A version 1 archive (catalog in hash partitions) becomes version 2 as its first compaction
makes it: its format version is raised, then one compaction streams the old partitions and
any batches not yet folded into sorted runs. A version 2 archive (flat commit log and folded
copies, one object per batch in each folder) is compacted, then its log and folded copies move
into fan-out subfolders (version 3, `lbdask/archive/relayout.py`). Nothing is lost; reading,
committing and compacting older archives needs no upgrade. It takes the archive's lease as
`lbdask compact` does (docs/archive-format.md, "Store layout").
"""
from __future__ import annotations

import argparse

from lbdask.archive import FORMAT_VERSION, Archive
from lbdask.archive.lease import hold
from lbdask.archive.objects import store_errors
from lbdask.archive.relayout import fan_out, flat_objects
from lbdask.cli.compact import dest_parser
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return dest_parser(subparsers, "upgrade", "convert an archive of an older format to the current one", __doc__)


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, mode="a", storage_options=parse_storage_options(args.storage_options))
    before = arc.format_version
    with store_errors(arc.url):
        if before == FORMAT_VERSION and arc.catalog.manifest().version == 2 and not any(flat_objects(arc)):
            print(f"{args.dest} is already archive format version {FORMAT_VERSION}")
            return 0
        with hold(arc.loc, "lbdask upgrade"):
            done = arc.compact()
            moved = fan_out(arc, FORMAT_VERSION)
    print(f"upgraded {args.dest} from archive format version {before} to {FORMAT_VERSION}: catalog generation "
          f"{done['generation']} holds its rows in sorted runs ({done['batches']} batch(es) folded on the way; "
          f"{moved} flat object(s) of the log and folded copies removed: the copies are in fan-out folders now)")
    return 0
