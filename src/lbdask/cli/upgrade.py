"""`lbdask upgrade DEST`: bring an archive written by an older lbdask to the current format.

A version 1 archive (catalog in hash partitions) becomes version 2: its format version is
raised, then one compaction streams the old partitions and any batches not yet folded into
sorted runs (docs/archive-format.md, "Catalog (LSM layout)"). Nothing is lost; reading
version 1 archives needs no upgrade, the first compaction of one does the same. It takes the
archive's lease as `lbdask compact` does.
"""
from __future__ import annotations

import argparse

from lbdask.archive import FORMAT_VERSION, Archive
from lbdask.archive.lease import hold
from lbdask.archive.objects import store_errors
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("upgrade", help="convert an archive of an older format to the current one",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, mode="a", storage_options=parse_storage_options(args.storage_options))
    before = arc.format_version
    if before == FORMAT_VERSION and arc.catalog.manifest().version == 2:
        print(f"{args.dest} is already archive format version {FORMAT_VERSION}")
        return 0
    with store_errors(args.dest), hold(arc.loc, "lbdask upgrade"):
        done = arc.compact()
    print(f"upgraded {args.dest} from archive format version {before} to {FORMAT_VERSION}: catalog generation "
          f"{done['generation']} holds its rows in sorted runs ({done['batches']} batch(es) folded on the way)")
    return 0
