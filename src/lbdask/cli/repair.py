"""`lbdask repair DEST [--apply]`: find lost catalog and data objects; rebuild the catalog index.

Without --apply only reports: what is missing or unreadable, how many rows a rebuild
restores, and which ids point at latent shards or stored copies that are gone (those cannot be
rebuilt). Exit 0: nothing wrong; 1: a rebuild is needed (dry run); 2: data is lost for good.
With --apply the index is rebuilt from every partition file and folded batch copy still on
the store; idempotent and safe to kill and rerun. It takes the archive's lease, so it does
not run beside a migration.
"""
from __future__ import annotations

import argparse

from lbdask.archive import Archive
from lbdask.archive.lease import hold
from lbdask.archive.objects import store_errors
from lbdask.archive.repair import Diagnosis, diagnose, rebuild
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("repair", help="check an archive for lost objects and rebuild its catalog",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--apply", action="store_true", help="rebuild the catalog index (default: dry run)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, mode="a" if args.apply else "r", storage_options=parse_storage_options(args.storage_options))
    with store_errors(args.dest):
        diag = diagnose(arc)
    with diag:
        return _report(args, arc, diag)


def _report(args: argparse.Namespace, arc: Archive, diag: Diagnosis) -> int:
    """Print what `diag` found, rebuild with --apply; the exit status."""
    for line in diag.catalog:
        print(f"catalog: {line}")
    for line in diag.data:
        print(f"lost: {line} (not recoverable)")
    if diag.needs_rebuild:
        if args.apply:
            with store_errors(args.dest), hold(arc.loc, "lbdask repair"):
                new = rebuild(arc, diag)
            print(f"rebuilt the catalog index: {diag.recovered} compacted row(s) in generation {new.generation}")
        else:
            print(f"a rebuild restores {diag.recovered} compacted row(s) ({diag.indexed} indexed now): "
                  f"run `lbdask repair {args.dest} --apply`")
    elif not diag.data:
        print(f"nothing to repair: {diag.recovered} compacted row(s) indexed, all data objects present")
    if diag.data:
        return 2
    return 1 if diag.needs_rebuild and not args.apply else 0
