"""`lbdask verify DEST`: re-decode a sample of an archive and check it (src/lbdask/verify.py).

Latent rows: bit for bit (recorded `decode_sha256`) in the same device class (hardware,
runtime and precision, e.g. `cpu-x86_64-openvino2026.4-fp32-avx2-t2`), or the recorded PSNR
against the source (`--source SRC`) within `--tolerance` dB in another class.
Kept rows: a PNG's sha256 must equal the source's, a jxl copy must decode to the recorded
samples (and, with `--source`, to the source's); failed rows (the raw bytes of an input that
is no decodable PNG): the stored bytes' sha256 must equal the source's; lossy rows (JPEG XL or
AVIF): like latents, recorded decode hash and PSNR. One line per failure, then a summary; exit 0
when all pass, 2 when an object is lost or corrupt, 1 for other failures. `--all` reads every
object (each row's stored bytes, every catalog object, the access statistics) and decodes
every latent, or `--sample N` of them.
"""
from __future__ import annotations

import argparse

from lbdask.cli.inference_options import add_inference_options, announce_inference
from lbdask.errors import ConfigError
from lbdask.storage import parse_storage_options

#: Default of --tolerance; lbdask.verify.CROSS_DEVICE_TOLERANCE_DB (not imported here: it pulls in torch).
DEFAULT_TOLERANCE_DB = 0.5


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("verify", help="re-decode a sample of an archive and check it",
                              description="Re-check a sample of an archive (or all of it: --all): checksums, decodes, stored copies.")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--all", action="store_true", dest="all_objects",
                   help="check every object: each row's stored bytes against their checksum, every catalog "
                        "object and the access statistics; decode every latent, or --sample N of them")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="rows to check, 0 = all (default 50); with --all: latents to decode (default all)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_DB, metavar="DB",
                   help="PSNR drift allowed across device classes (default %(default)s dB); "
                        "the same device class must match bit for bit")
    p.add_argument("--source", metavar="SRC", help="the migration source, to recompute PSNR against it")
    p.add_argument("--model", help="model name or path (default: the archive's)")
    p.add_argument("--weights", metavar="DIR", help="folder with the model weights")
    p.add_argument("--device", default="cpu", help="torch device for decoding (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec options for DEST and SRC")
    add_inference_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.verify import verify

    if args.sample is not None and args.sample < 0:
        raise ConfigError(f"--sample must be >= 0, got {args.sample}")
    sample = args.sample if args.sample is not None else 0 if args.all_objects else 50
    report = verify(args.dest, sample=sample, seed=args.seed, source=args.source, model=args.model,
                    weights=args.weights, device=args.device, tolerance=args.tolerance,
                    storage_options=parse_storage_options(args.storage_options),
                    precision=args.precision, runtime=args.runtime, on_model=announce_inference,
                    all_objects=args.all_objects, on_failure=print)
    for line in report.damaged:
        print(line)
    print(report.summary())
    return report.exit_code
