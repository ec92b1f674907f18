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
from lbdask.cli.compact import compact_held, dest_parser
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return dest_parser(subparsers, "upgrade", "convert an archive of an older format to the current one", __doc__)


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, mode="a", storage_options=parse_storage_options(args.storage_options))
    before = arc.format_version
    if before == FORMAT_VERSION and arc.catalog.manifest().version == 2:
        print(f"{args.dest} is already archive format version {FORMAT_VERSION}")
        return 0
    done = compact_held(arc, "lbdask upgrade")
    print(f"upgraded {args.dest} from archive format version {before} to {FORMAT_VERSION}: catalog generation "
          f"{done['generation']} holds its rows in sorted runs ({done['batches']} batch(es) folded on the way)")
    return 0
