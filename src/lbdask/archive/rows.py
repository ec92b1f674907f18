"""Catalog rows and how a batch of them is serialised into one object.

A batch object is gzip-compressed JSON lines, one row per line, so that it is written in
one PUT and read back without any other file. Raw PNG chunk bytes are base64-encoded; large
ones live beside the rows (`chunks_ref`, lbdask.archive.meta) so that index reads stay small.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any, Literal

from lbdask.errors import IntegrityError

Status = Literal["latent", "kept", "failed", "refused", "lossy"]
#: latent: a pcodec latent; kept: the source PNG, or its pixels as lossless JPEG XL
#: (kept_format); failed: the raw bytes of an input that is no decodable PNG; refused: not
#: read at all (not a regular file inside SRC, unreadable); lossy: lossy JPEG XL or AVIF
#: (kept_format) that met min_psnr and was smaller than the latent.
STATUSES: tuple[str, ...] = ("latent", "kept", "failed", "refused", "lossy")


@dataclass(frozen=True)
class OriginalRef:
    """A byte range inside one batch object: a row's stored copy (kept copy, lossy copy or a
    failed input's raw bytes) in `originals/`, or its pixel copy in `pixels/`. Named after the
    stored row field `original`, which the on-disk format keeps (docs/glossary.md)."""

    key: str  # path relative to the archive root
    offset: int
    size: int


@dataclass(frozen=True)
class ChunksRef(OriginalRef):
    """Where a row's ancillary PNG chunks lie in its batch's PNG metadata object
    (`meta/<fan>/<batch_id>.bin`, lbdask.archive.meta): the chunks as the PNG file frames them,
    their sha256, and their types (for `lbdask ls` without a read)."""

    sha256: str = ""
    types: tuple[str, ...] = ()


@dataclass
class CatalogRow:
    """Everything the archive knows about one source image."""

    id: str
    status: Status
    reason: str | None = None
    bucket: str | None = None  # latent rows: Zarr array name
    index: int | None = None  # latent rows: position along the bucket's first axis
    source_size: int = 0
    source_sha256: str | None = None
    source_stamp: str | None = None  # the source's version when listed: "mtime:<ns>" (folder) or "etag:<ETag>" (S3)
    width: int = 0
    height: int = 0
    mode: str | None = None  # source PNG mode family: "RGB", "RGBA", "L", "LA", "P", ...
    psnr: float | None = None
    psnr_initial: float | None = None
    refine_steps: int = 0
    model_fingerprint: str | None = None
    bits: int | None = None
    lo: list[float] | None = None
    hi: list[float] | None = None
    checksum: str | None = None
    stored_bytes: int = 0  # latent: pcodec bytes; kept: the png / jxl object; failed: raw source bytes; lossy: jxl / avif; refused: 0
    chunks: list[tuple[str, bytes]] = field(default_factory=list)  # ancillary PNG chunks (type, raw data)
    chunks_ref: ChunksRef | None = None  # the chunks when large, in `meta/` (then `chunks` is empty)
    original: OriginalRef | None = None  # the stored copy of a kept, lossy or failed row (stored name)
    device_class: str | None = None
    decode_sha256: str | None = None  # latent rows: sha256 of the decoded RGB bytes (lbdask verify)
    batch_id: str | None = None
    # kept formats (lbdask.image.kept); rows written before them have None and hold the PNG itself
    kept_format: str | None = None  # kept rows: "png" | "jxl"; lossy rows: "jxl" | "avif" (None: jxl)
    kept_note: str | None = None  # why a requested jxl copy was not used (the PNG was kept)
    stored_sha256: str | None = None  # sha256 of the stored object when it is not the source's bytes
    lossy_distance: float | None = None  # lossy jxl rows: the JPEG XL distance the search settled on
    lossy_quality: int | None = None  # lossy avif rows: the AVIF quality level (0-100) the search settled on
    lossy_bits: int | None = None  # lossy avif rows: bits per sample of the AVIF (8 or 10)
    # re-tiering (lbdask.retier); rows written before it have None
    pixel: OriginalRef | None = None  # a decoded PNG in the pixel tier (`pixels/`): reads return it as it is
    pixel_sha256: str | None = None  # sha256 of that PNG
    demote_floor: float | None = None  # kept rows: PSNR floor (dB) at which a retier demote was refused
    # latent rows a retier re-encode wrote: {"from": old fingerprint, "psnr_before", "psnr_after", "copy"}
    reencoded: dict[str, Any] | None = None

    @property
    def representation(self) -> str:
        """"latent", "png", "jxl", "jxl-lossy", "avif-lossy", "failed" or "refused": what a reader gets back from
        (the keys of the report's per-representation breakdown, `archive.summary`)."""
        if self.status == "kept":
            return self.kept_format or "png"
        if self.status == "lossy":
            return f"{self.kept_format or 'jxl'}-lossy"
        return self.status

    @property
    def chunk_types(self) -> list[str]:
        """The types of the row's ancillary chunks, in file order, wherever they are stored."""
        return list(self.chunks_ref.types) if self.chunks_ref is not None else [t for t, _ in self.chunks]

    def object_refs(self) -> list[tuple[str, OriginalRef]]:
        """(what, byte range) of every data object the row references besides a latent shard:
        its stored copy, pixel copy and PNG metadata (what `repair` and the retier sweep check)."""
        refs = (("stored copy", self.original), ("pixel copy", self.pixel), ("PNG metadata", self.chunks_ref))
        return [(what, ref) for what, ref in refs if ref is not None]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (bytes as base64). Field by field, not `dataclasses.asdict`,
        whose deep copy made serialising rows the bulk of a commit's and a compaction's CPU."""
        out = {name: getattr(self, name) for name in _field_names()}
        for ref in _REF_FIELDS:
            if out[ref] is not None:
                out[ref] = dict(vars(out[ref]))  # flat dataclasses: asdict's deep copy took 2/3 of to_json
        out["chunks"] = [[str(t), base64.b64encode(bytes(d)).decode("ascii")] for t, d in self.chunks]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogRow:
        """Inverse of `to_json`; unknown keys from newer minor writers are ignored."""
        known = _field_names()
        values = {k: v for k, v in data.items() if k in known}
        values["chunks"] = [(t, base64.b64decode(d)) for t, d in values.get("chunks") or []]
        for ref in ("original", "pixel"):
            if values.get(ref) is not None:
                values[ref] = OriginalRef(**values[ref])
        if values.get("chunks_ref") is not None:
            values["chunks_ref"] = ChunksRef(**{**values["chunks_ref"], "types": tuple(values["chunks_ref"]["types"])})
        return cls(**values)


#: Row fields holding a byte-range reference (a small dataclass), serialised as a mapping.
_REF_FIELDS = ("original", "pixel", "chunks_ref")


@functools.cache
def _field_names() -> dict[str, None]:
    """The row's field names in order (a dict: ordered, and membership tests are O(1))."""
    return dict.fromkeys(f.name for f in dataclasses.fields(CatalogRow))


def row_line(row: CatalogRow) -> str:
    """The row's JSON line as objects store it (ASCII: `json.dumps` escapes the rest)."""
    return json.dumps(row.to_json(), separators=(",", ":"))


def dump_lines(lines: Iterable[str]) -> bytes:
    """One batch/partition object of rows already serialised by `row_line`."""
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6, mtime=0)


def dump_rows(rows: Iterable[CatalogRow]) -> bytes:
    """Serialise rows into one batch/partition object."""
    return dump_lines(map(row_line, rows))


def load_lines(blob: bytes) -> list[str]:
    """The JSON lines of an object written by `dump_rows`, unparsed."""
    return [line for line in gzip.decompress(blob).decode("utf-8").splitlines() if line]


def load_rows(blob: bytes) -> list[CatalogRow]:
    """Parse an object written by `dump_rows`."""
    return [CatalogRow.from_json(json.loads(line)) for line in load_lines(blob)]


def parse_rows(path: str, blob: bytes) -> list[CatalogRow]:
    """Rows of a catalog object; IntegrityError naming it when it is not what was written."""
    try:
        return load_rows(blob)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"catalog object {path} is unreadable ({type(exc).__name__})") from None


_ID_PREFIX = '{"id":"'


def line_id(line: str) -> str:
    """The id of a row's JSON line without parsing the rest: `row_line` writes it first
    (a merge copies rows by their lines, `runs.RawRow`); any other line is parsed whole."""
    if line.startswith(_ID_PREFIX):
        image_id, end = scanstring(line, len(_ID_PREFIX))
        if line.startswith(",", end):
            return image_id
    return str(json.loads(line)["id"])
