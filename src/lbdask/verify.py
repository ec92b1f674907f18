"""Verification of an archive: re-check a sample - checksums, decodes, stored copies.

Latent rows: the stored latent must match its checksum, decode with the archive's model,
and give back what the migration measured - bit for bit (recorded `decode_sha256`) on
the same device class (hardware, runtime and precision), or the recorded PSNR against the source (`--source SRC`) within
`tolerance` dB on another device class. Kept rows: a PNG's sha256 must equal the source's;
a jxl copy must decode to the recorded samples (and, with the source, to the source's).
Failed rows: the raw bytes' sha256 must equal the source's. Lossy JPEG XL rows: like
latents, recorded decode hash and PSNR against the source. `lbdask verify` (src/lbdask/cli/verify.py) prints the report; repair and serving
call the same functions. Every checked row's PNG metadata object (`meta/`) is read and
checked against its sha256. `--all` (`verify(all_objects=True)`) reads every row's stored object
with its checksum, decodes all latents or a sample of them, and reads every catalog object
(batches, manifest, partitions, folded copies) and the access statistics.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from lbdask.access.log import load_access
from lbdask.archive import Archive, CatalogRow
from lbdask.archive.rows import parse_rows
from lbdask.archive.meta import row_chunks
from lbdask.errors import IntegrityError, LbdaskError, NotFoundError
from lbdask.image import kept, pngsamples
from lbdask.image.pngio import decode as decode_png
from lbdask.image.quality import psnr
from lbdask.latent.decode import decode_sha256, row_pixels
from lbdask.models import load_model
from lbdask.models.row_models import RowModels
from lbdask.storage import Location, open_location

#: PSNR drift allowed between a recorded and a recomputed value on the same device class
#: (the batch-of-one decode is bit-exact there; a migration that measured PSNR on batched
#: decodes may differ by a rounding flip of a few pixels, ~1e-3 dB).
SAME_DEVICE_TOLERANCE_DB = 0.01
#: Default drift allowed across device classes (fp16 GPU kernels vs fp32 CPU, ...).
CROSS_DEVICE_TOLERANCE_DB = 0.5

T = TypeVar("T")


#: Failure messages a report keeps: every row of a damaged 10 M-row archive can fail, and
#: `on_failure` (the CLI: print) sees each one as it comes.
HELD_FAILURES = 10_000


@dataclass
class VerifyReport:
    """Outcome of a verification run: failure messages (each passed to `on_failure` as it is
    found; the first `HELD_FAILURES` kept) and counts of what was checked."""

    failures: list[str] = field(default_factory=list)  # the first HELD_FAILURES messages
    failure_count: int = 0  # all of them
    on_failure: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    latent_checked: int = 0
    kept_checked: int = 0
    failed_checked: int = 0
    lossy_checked: int = 0
    decode_unchecked: int = 0   # decodes with neither a comparable checksum nor a source
    checksum_only: int = 0      # latents whose stored bytes were checked without a decode (--all --sample N)
    corrupt: int = 0            # failures that are a missing or corrupt object (IntegrityError)
    damaged: list[str] = field(default_factory=list)  # catalog objects that could not be read

    def fail(self, lines: Iterable[str]) -> None:
        """Record failure messages."""
        for line in lines:
            self.failure_count += 1
            if len(self.failures) < HELD_FAILURES:
                self.failures.append(line)
            if self.on_failure is not None:
                self.on_failure(line)

    def summary(self) -> str:
        lossy = f", {self.lossy_checked} lossy" if self.lossy_checked else ""
        undecoded = f" ({self.checksum_only} latent(s) checksum only, not decoded)" if self.checksum_only else ""
        return (f"verified {self.latent_checked} latent, {self.kept_checked} kept and {self.failed_checked} failed rows"
                f"{lossy}{undecoded}: "
                f"{self.failure_count} failure(s) ({self.corrupt} corrupt or missing), "
                f"{self.decode_unchecked} decode(s) without a reference"
                + (f"; catalog damaged: {len(self.damaged)} object(s) unreadable" if self.damaged else ""))

    @property
    def exit_code(self) -> int:
        """2 for damage (a lost or corrupt object), 1 for other failures, 0 when all pass."""
        return 2 if self.damaged or self.corrupt else 1 if self.failure_count else 0


#: Row statuses with a stored object that verification reads.
STORED = ("latent", "kept", "failed", "lossy")


def reservoir(items: Iterable[T], n: int, seed: int = 0) -> list[T]:
    """A uniform sample of `n` of `items` (all when fewer) in one pass holding `n` of them:
    reservoir sampling (Algorithm R), reproducible for a seed and the order of `items`."""
    rng = random.Random(seed)
    kept: list[T] = []
    for seen, item in enumerate(items):
        if seen < n:
            kept.append(item)
        else:
            slot = rng.randrange(seen + 1)
            if slot < n:
                kept[slot] = item
    return kept


def sample_rows(rows: Iterable[CatalogRow], n: int, seed: int = 0) -> Iterable[CatalogRow]:
    """Rows with stored bytes: with `n` > 0 a reproducible uniform sample of up to `n` of them,
    in id order (`n` rows held); with 0 every one, streamed in the order `rows` gives them."""
    stored = (r for r in rows if r.status in STORED)
    if n <= 0:
        return stored
    return sorted(reservoir(stored, n, seed), key=lambda r: r.id)


def verify_latent(arc: Archive, model, row: CatalogRow, source: Location | None, tolerance: float) -> tuple[list[str], bool]:
    """Failures for one latent row, and whether its decode was compared with any reference."""
    if row.model_fingerprint and row.model_fingerprint != model.fingerprint:
        return [f"{row.id}: written with model {row.model_fingerprint[:12]}, verifying with {model.fingerprint[:12]}"], False
    rgb = row_pixels(arc, model, row)
    same_class = row.device_class == model.device_class  # hardware, runtime and precision
    failures, compared = [], False
    recorded_sha = getattr(row, "decode_sha256", None)
    if recorded_sha and same_class:
        compared = True
        if decode_sha256(rgb) != recorded_sha:
            failures.append(f"{row.id}: decode is not bit-exact on device class {row.device_class}")
    if (row.reencoded or {}).get("copy", "source") != "source":
        source = None  # re-encoded from the pixel copy or the old latent: its PSNR is against that copy
    if source is not None:
        data = _source_bytes(source, row)
        if data is None:
            return failures + [f"{row.id}: source file changed since migration (sha256 differs)"], True
        compared = True
        source_rgb, _alpha = decode_png(data, max_pixels=row.width * row.height)
        now = psnr(source_rgb, rgb)
        allowed = SAME_DEVICE_TOLERANCE_DB if same_class else tolerance
        if row.psnr is None:
            failures.append(f"{row.id}: no PSNR recorded to compare with (now {now:.2f} dB)")
        elif not abs(now - row.psnr) <= allowed and not (np.isinf(now) and np.isinf(row.psnr)):
            failures.append(f"{row.id}: PSNR {now:.3f} dB vs recorded {row.psnr:.3f} dB "
                            f"(drift above {allowed:g} dB; device class {model.device_class} "
                            f"vs {row.device_class})")
    return failures, compared


def _source_bytes(source: Location, row: CatalogRow) -> bytes | None:
    """The source file of `row`, or None when it changed since the migration."""
    data = source.fs.cat_file(source.path(row.id))
    return data if hashlib.sha256(data).hexdigest() == row.source_sha256 else None


def verify_kept(arc: Archive, row: CatalogRow, source: Location | None = None) -> list[str]:
    """Failures for one kept or failed row: a PNG copy or a failed input's raw bytes must hash
    to the source's sha256; a jxl copy must decode to the recorded samples (and to the
    source's, given the source)."""
    if row.original is None:
        return [f"{row.id}: {row.status} input has no stored copy (archive written before failed inputs were kept)"]
    data = arc.read_original(row)  # the stored copy (docs/glossary.md), checked against its own sha256
    if row.status == "failed" or (row.kept_format or "png") == "png":
        digest = hashlib.sha256(data).hexdigest()
        if digest != row.source_sha256:
            return [f"{row.id}: {row.status} bytes sha256 {digest[:12]} does not match source {str(row.source_sha256)[:12]}"]
        return []
    png = kept.to_png(data, row.kept_format)
    failures = []
    if row.decode_sha256 and kept.samples_sha256(pngsamples.samples(png)) != row.decode_sha256:
        failures.append(f"{row.id}: {row.kept_format} copy does not decode to the recorded samples")
    if source is not None:
        source_png = _source_bytes(source, row)
        why = None if source_png is None else kept.mismatch(pngsamples.samples(source_png), png)
        if source_png is None:
            failures.append(f"{row.id}: source file changed since migration (sha256 differs)")
        elif why:
            failures.append(f"{row.id}: {row.kept_format} copy is not the source's pixels: {why}")
    return failures


def verify_lossy(arc: Archive, row: CatalogRow, source: Location | None, tolerance: float) -> list[str]:
    """Failures for one lossy row (JPEG XL or AVIF): recorded decode hash, and PSNR against the source."""
    rgb = kept.lossy_decode(arc.read_original(row), row.kept_format)
    what = f"lossy {row.representation.removesuffix('-lossy')}"
    failures = []
    if row.decode_sha256 and kept.samples_sha256(rgb) != row.decode_sha256:
        failures.append(f"{row.id}: {what} decode differs from the recorded one")
    if source is not None:
        source_png = _source_bytes(source, row)
        if source_png is None:
            return failures + [f"{row.id}: source file changed since migration (sha256 differs)"]
        now = psnr(decode_png(source_png, max_pixels=row.width * row.height)[0], rgb)
        if row.psnr is None or not abs(now - row.psnr) <= tolerance:
            failures.append(f"{row.id}: PSNR {now:.3f} dB vs recorded {row.psnr} dB ({what})")
    return failures


def verify_archive(arc: Archive, model, rows: Iterable[CatalogRow], source: Location | None = None,
                   tolerance: float = CROSS_DEVICE_TOLERANCE_DB,
                   decode: Callable[[CatalogRow], bool] | None = None, models: RowModels | None = None,
                   on_failure: Callable[[str], None] | None = None) -> VerifyReport:
    """Check every given row; errors a row raises (bad checksum, missing object) become failures
    (each passed to `on_failure` as it is found).

    `models`: the model of each latent row by its fingerprint (re-encoded rows); None: `model` for all.

    `decode(row)` False: that latent's stored bytes are read and checksummed, not decoded.
    """
    report = VerifyReport(on_failure=on_failure)
    for row in rows:
        try:
            if row.pixel is not None:  # a pixel-tier copy (lbdask retier promote): what reads return
                arc.read_pixels(row)
            row_chunks(arc, row)  # PNG metadata read back into every PNG (its object, sha256 checked)
            if row.status == "latent" and decode is not None and not decode(row):
                report.latent_checked += 1
                report.checksum_only += 1
                arc.read_latent(row)
                continue
            if row.status in ("kept", "failed"):
                report.kept_checked += row.status == "kept"
                report.failed_checked += row.status == "failed"
                report.fail(verify_kept(arc, row, source))
            elif row.status == "lossy":
                report.lossy_checked += 1
                report.fail(verify_lossy(arc, row, source, tolerance))
            else:
                report.latent_checked += 1
                failures, compared = verify_latent(arc, models.for_row(row) if models else model, row, source, tolerance)
                report.fail(failures)
                report.decode_unchecked += not compared
        except (LbdaskError, OSError) as exc:
            missing = _missing_shard(arc, row)
            report.fail([f"{row.id}: {missing} is missing" if missing else f"{row.id}: {type(exc).__name__}: {exc}"])
            report.corrupt += bool(missing) or isinstance(exc, (IntegrityError, NotFoundError, FileNotFoundError))
    return report


def _missing_shard(arc: Archive, row: CatalogRow) -> str | None:
    """The shard object of a latent row that failed to read, when it is gone from the store
    (Zarr reads a missing shard as fill values, so the failure alone says "checksum")."""
    if row.status != "latent" or row.bucket is None or row.index is None:
        return None
    key = arc.shard_key(row.bucket, row.index // arc.shard_size)
    try:
        return None if arc.loc.fs.exists(arc.loc.path(key)) else key
    except OSError:
        return None


def catalog_damage(arc: Archive) -> list[str]:
    """Catalog objects that `rows()` does not read (the folded copies repair rebuilds from)
    and the access statistics, each read whole: one message per unreadable object."""
    found = []
    catalog = arc.catalog
    for name in catalog.folded_names():
        path = catalog.folded_path(name)
        try:
            blob = arc.loc.fs.cat_file(path)
            if blob:  # archives from before folded copies kept empty markers
                parse_rows(path, blob)
        except (IntegrityError, FileNotFoundError) as exc:
            found.append(str(exc))
    try:
        load_access(arc.loc)
    except IntegrityError as exc:
        found.append(str(exc))
    return found


def verify(dest: str, sample: int = 50, seed: int = 0, source: str | None = None, model: str | None = None,
           weights: str | None = None, device: str = "cpu", tolerance: float = CROSS_DEVICE_TOLERANCE_DB,
           storage_options: dict | None = None, precision: str | None = None, runtime: str | None = None,
           on_model: Callable[[object], None] | None = None, all_objects: bool = False,
           on_failure: Callable[[str], None] | None = None) -> VerifyReport:
    """Open `dest`, load its model (or `model`, checked against the archive) and verify a sample.

    `all_objects`: every row's stored object and every catalog object is read and checked;
    `sample` then only limits the latents that are also decoded (0 = all).

    `precision` / `runtime`: None = configs/models.yaml (lbdask.models.precision); `on_model`
    is called with the loaded model (the CLI prints the runtime and precision it runs);
    `on_failure` with each failure message as it is found (the CLI prints it).
    """
    arc = Archive.open(dest, mode="r", storage_options=storage_options)
    decoder = load_model(model or arc.model_info["name"], weights=weights, device=device,
                         precision=precision, runtime=runtime)
    if on_model is not None:
        on_model(decoder)
    arc.check_model(decoder.fingerprint)
    models = RowModels(arc, lambda: decoder, device=device, precision=precision, runtime=runtime)
    src = open_location(source, storage_options) if source else None
    damaged: list[str] = []
    if not all_objects:
        report = verify_archive(arc, decoder, sample_rows(arc.rows(damaged), sample, seed), src, tolerance, models=models,
                                on_failure=on_failure)
    else:
        # two passes over the catalog, never all rows at once: the latents to decode, then every row
        chosen = None if sample <= 0 else {r.id for r in reservoir(
            (r for r in arc.rows([]) if r.status == "latent"), sample, seed)}
        report = verify_archive(arc, decoder, sample_rows(arc.rows(damaged), 0), src, tolerance,
                                decode=None if chosen is None else lambda row: row.id in chosen, models=models,
                                on_failure=on_failure)
        damaged += catalog_damage(arc)
    report.damaged = damaged
    return report
