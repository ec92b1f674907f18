"""`lbdask read DEST ID [-o FILE]`: write one archived image as PNG bytes (a failed input:
its raw bytes, with a one-line note on stderr)."""
from __future__ import annotations

import argparse
import sys

from lbdask.cli.inference_options import add_inference_options, announce_inference
from lbdask.errors import LbdaskError
from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("read", help="write one image of an archive as PNG (stdout without -o)")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("id", metavar="ID", help="image id (path relative to the migrated source)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the PNG here instead of stdout")
    p.add_argument("--weights", metavar="DIR", help="weights of the archive's model (offline use)")
    p.add_argument("--device", help="torch device for decoding (default: the model's choice)")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    p.add_argument("--scheduler", metavar="ADDR", help="read through the serving cluster at ADDR (`lbdask serve`)")
    add_inference_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.api import open as open_archive  # zarr; torch only when a latent is decoded

    options = parse_storage_options(args.storage_options)
    box = open_archive(args.dest, storage_options=options, weights=args.weights, device=args.device,
                       scheduler=args.scheduler, precision=args.precision, runtime=args.runtime)
    try:
        png = box.read(args.id)
    finally:
        if args.scheduler:
            box.close()
    row = (open_archive(args.dest, storage_options=options) if args.scheduler else box).row(args.id)
    if row.status == "failed":
        print(f"lbdask: note: '{args.id}' is the raw bytes of an input that is not a decodable PNG "
              f"({row.reason})", file=sys.stderr)
    if getattr(box, "loaded_model", None) is not None:  # in-process reads: say what decoded
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
