"""`lbdask verify DEST`: re-check a sample of an archive - checksums, decodes, kept originals.

Latent rows: the stored latent must match its checksum, decode with the archive's model,
and give back what the migration measured - bit for bit (recorded `decode_sha256`) in
the same device class (hardware, runtime and precision, e.g. `cpu-x86_64-openvino2026.4-fp32`),
or the recorded PSNR against the source (`--source SRC`) within `--tolerance` dB in
another class. Kept rows: the original's sha256 must equal the
source's. One line per failure; exit 0 when all pass, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..archive import Archive, CatalogRow
from ..codec import LatentCodec
from ..errors import LbdaskError
from ..fidelity import decode_sha256, reference_decode
from ..metrics import psnr
from ..models import load_model
from ..pngio import decode as decode_png
from ..storage import Location, open_location, parse_storage_options
from .inference_options import add_inference_options, announce_inference

#: PSNR drift allowed between a recorded and a recomputed value on the same device class
#: (the batch-of-one decode is bit-exact there; a migration that measured PSNR on batched
#: decodes may differ by a rounding flip of a few pixels, ~1e-3 dB).
SAME_DEVICE_TOLERANCE_DB = 0.01
#: Default drift allowed across device classes (fp16 GPU kernels vs fp32 CPU, ...).
CROSS_DEVICE_TOLERANCE_DB = 0.5


@dataclass
class VerifyReport:
    """Outcome of a verification run: one message per failure and counts of what was checked."""

    failures: list[str] = field(default_factory=list)
    latent_checked: int = 0
    kept_checked: int = 0
    decode_unchecked: int = 0   # decodes with neither a comparable checksum nor a source

    def summary(self) -> str:
        return (f"verified {self.latent_checked} latent and {self.kept_checked} kept rows: "
                f"{len(self.failures)} failure(s), {self.decode_unchecked} decode(s) without a reference")


def sample_rows(rows: Iterable[CatalogRow], n: int, seed: int = 0) -> list[CatalogRow]:
    """Up to `n` latent/kept rows (0 = all), chosen reproducibly, in id order."""
    candidates = sorted((r for r in rows if r.status in ("latent", "kept")), key=lambda r: r.id)
    if 0 < n < len(candidates):
        candidates = sorted(random.Random(seed).sample(candidates, n), key=lambda r: r.id)
    return candidates


def verify_latent(arc: Archive, model, row: CatalogRow, source: Location | None, tolerance: float) -> tuple[list[str], bool]:
    """Failures for one latent row, and whether its decode was compared with any reference."""
    if row.model_fingerprint and row.model_fingerprint != model.fingerprint:
        return [f"{row.id}: written with model {row.model_fingerprint[:12]}, verifying with {model.fingerprint[:12]}"], False
    enc = arc.read_latent(row)
    rgb = reference_decode(model, LatentCodec(enc.bits).decode(enc), (row.height, row.width))
    same_class = row.device_class == model.device_class  # hardware, runtime and precision
    failures, compared = [], False
    recorded_sha = getattr(row, "decode_sha256", None)
    if recorded_sha and same_class:
        compared = True
        if decode_sha256(rgb) != recorded_sha:
            failures.append(f"{row.id}: decode is not bit-exact on device class {row.device_class}")
    if source is not None:
        data = source.fs.cat_file(source.path(row.id))
        if hashlib.sha256(data).hexdigest() != row.source_sha256:
            return failures + [f"{row.id}: source file changed since migration (sha256 differs)"], True
        compared = True
        original, _alpha = decode_png(data, max_pixels=row.width * row.height)
        now = psnr(original, rgb)
        allowed = SAME_DEVICE_TOLERANCE_DB if same_class else tolerance
        if row.psnr is None:
            failures.append(f"{row.id}: no PSNR recorded to compare with (now {now:.2f} dB)")
        elif not abs(now - row.psnr) <= allowed and not (np.isinf(now) and np.isinf(row.psnr)):
            failures.append(f"{row.id}: PSNR {now:.3f} dB vs recorded {row.psnr:.3f} dB "
                            f"(drift above {allowed:g} dB; device class {model.device_class} "
                            f"vs {row.device_class})")
    return failures, compared


def verify_kept(arc: Archive, row: CatalogRow) -> list[str]:
    """Failures for one kept row: its stored original must hash to the source's sha256."""
    digest = hashlib.sha256(arc.read_original(row)).hexdigest()
    if digest != row.source_sha256:
        return [f"{row.id}: kept original sha256 {digest[:12]} does not match source {str(row.source_sha256)[:12]}"]
    return []


def verify_archive(arc: Archive, model, rows: Iterable[CatalogRow], source: Location | None = None,
                   tolerance: float = CROSS_DEVICE_TOLERANCE_DB) -> VerifyReport:
    """Check every given row; errors a row raises (bad checksum, missing object) become failures."""
    report = VerifyReport()
    for row in rows:
        try:
            if row.status == "kept":
                report.kept_checked += 1
                report.failures += verify_kept(arc, row)
            else:
                report.latent_checked += 1
                failures, compared = verify_latent(arc, model, row, source, tolerance)
                report.failures += failures
                report.decode_unchecked += not compared
        except (LbdaskError, OSError) as exc:
            report.failures.append(f"{row.id}: {type(exc).__name__}: {exc}")
    return report


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("verify", help="re-decode a sample of an archive and check it",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--sample", type=int, default=50, metavar="N", help="rows to check, 0 = all (default 50)")
    p.add_argument("--tolerance", type=float, default=CROSS_DEVICE_TOLERANCE_DB, metavar="DB",
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
    options = parse_storage_options(args.storage_options)
    arc = Archive.open(args.dest, mode="r", storage_options=options)
    model = load_model(args.model or arc.model_info["name"], weights=args.weights, device=args.device,
                       precision=args.precision, runtime=args.runtime)
    announce_inference(model)
    arc.check_model(model.fingerprint)
    source = open_location(args.source, options) if args.source else None
    report = verify_archive(arc, model, sample_rows(arc.rows(), args.sample, args.seed), source, args.tolerance)
    for line in report.failures:
        print(line)
    print(report.summary())
    return 1 if report.failures else 0
