"""`lbdask read DEST ID [-o FILE]`: write one archived image as PNG bytes."""
from __future__ import annotations

import argparse
import sys

from ..errors import LbdaskError
from ..reader import open as open_archive
from ..storage import parse_storage_options
from .inference_options import add_inference_options, announce_inference


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("read", help="write one image of an archive as PNG (stdout without -o)")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("id", metavar="ID", help="image id (path relative to the migrated source)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the PNG here instead of stdout")
    p.add_argument("--weights", metavar="DIR", help="weights of the archive's model (offline use)")
    p.add_argument("--device", help="torch device for decoding (default: the model's choice)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    add_inference_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    box = open_archive(args.dest, storage_options=parse_storage_options(args.storage_options),
                       weights=args.weights, device=args.device, precision=args.precision, runtime=args.runtime)
    png = box.read(args.id)
    if box.loaded_model is not None:
        announce_inference(box.loaded_model)
    if args.output:
        try:
            with open(args.output, "wb") as f:
                f.write(png)
        except OSError as exc:
            raise LbdaskError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
    return 0
