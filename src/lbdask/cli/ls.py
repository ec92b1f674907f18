"""`lbdask ls DEST [--status S] [--json]`: list an archive's catalog rows.

Rows are printed as `Archive.rows()` yields them (ascending id order), one line at a time:
the first line comes at once and memory does not grow with the archive.
"""
from __future__ import annotations

import argparse
import json
import sys

from lbdask.archive.rows import STATUSES, CatalogRow
from lbdask.cli.options import add_list_option, choice, list_values
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ls", help="list the images of an archive")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    add_list_option(p, "--status", help=f"only rows with these statuses: {', '.join(STATUSES)}")
    p.add_argument("--json", action="store_true", help="one JSON object per line (chunk data left out)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def row_summary(row: CatalogRow) -> dict:
    """A row as JSON without the raw ancillary chunk bytes (only their types)."""
    out = row.to_json()
    out["chunks"] = row.chunk_types
    return out


def row_line(row: CatalogRow) -> str:
    psnr = f"{row.psnr:.2f}" if row.psnr is not None else "-"
    return "\t".join([row.id, row.status, row.reason or "-", f"{row.width}x{row.height}", str(row.source_size),
                      str(row.stored_bytes), psnr])


def run(args: argparse.Namespace) -> int:
    from lbdask.archive import Archive  # zarr

    arc = Archive.open(args.dest, storage_options=parse_storage_options(args.storage_options))
    wanted = set(list_values(args.status or STATUSES, choice(STATUSES), "--status", " or ".join(STATUSES)))
    problems: list[str] = []
    out = sys.stdout
    if not args.json:
        out.write("id\tstatus\treason\tsize\tsource_bytes\tstored_bytes\tpsnr\n")
    for row in arc.rows(problems):
        if row.status not in wanted:
            continue
        out.write((json.dumps(row_summary(row)) if args.json else row_line(row)) + "\n")
    for problem in problems:  # the readable rows were listed; say what could not be read
        print(f"lbdask: error: {problem}", file=sys.stderr)
    return 2 if problems else 0
