"""PNG metadata objects: the large ancillary chunks of a batch's rows, kept beside the index.

Prompts and ComfyUI workflows in PNG text chunks (median 6.8 KB per real AI image) would
otherwise travel base64 inside every catalog row: in the commit object, the folded copy and
every index read. `Archive.commit` moves the chunks of each row holding more than
`INLINE_MAX` bytes of them into one object per batch, `meta/<fan>/<batch_id>.bin`
(`Archive.batch_object`), written durably
before the commit that names it (like `originals/`); the row keeps a `ChunksRef` and no
inline chunks. What rebuilds a PNG fetches them with `row_chunks` / `with_chunks`: one range
read, checked against the recorded sha256. Rows written before keep their inline chunks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from lbdask.archive.objects import put_atomic, store_errors
from lbdask.archive.rows import CatalogRow, ChunksRef, OriginalRef
from lbdask.errors import IntegrityError
from lbdask.storage import Location

#: A row whose chunks hold at most this many data bytes keeps them inline (base64: at most
#: ~360 bytes of JSON, twice a reference's ~180: key, offset, size, sha256, types), which
#: spares a range read per PNG rebuilt from it; short Software or Title tags stay inline, any
#: prompt, workflow or ICC profile goes out (the shared corpus's smallest text is 4.3 KB).
INLINE_MAX = 256
#: Folder of the PNG metadata objects, relative to the archive root.
FOLDER = "meta"


class Archive(Protocol):
    """What this module uses of `lbdask.archive.Archive` (which calls `offload` on commit)."""

    url: str
    loc: Location

    def read_ref(self, image_id: str, ref: OriginalRef, expected: str | None, what: str) -> bytes: ...


def frame(chunks: Iterable[tuple[str, bytes]]) -> bytes:
    """The chunks as a PNG file holds them, one after the other: length, type, data, CRC."""
    out = []
    for ctype, data in chunks:
        body = ctype.encode("latin-1") + bytes(data)
        out.append(struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body)))
    return b"".join(out)


def unframe(blob: bytes, where: str) -> list[tuple[str, bytes]]:
    """The (type, data) chunks `frame` wrote, in order; IntegrityError naming `where` otherwise."""
    chunks, pos = [], 0
    while pos < len(blob):
        end = pos + 12 + (struct.unpack_from(">I", blob, pos)[0] if pos + 4 <= len(blob) else 0)
        body = blob[pos + 4:end - 4]  # type and data
        if end > len(blob) or zlib.crc32(body) != int.from_bytes(blob[end - 4:end], "big"):
            raise IntegrityError(f"{where} holds no valid PNG chunk at byte {pos}")
        chunks.append((body[:4].decode("latin-1"), body[4:]))
        pos = end
    return chunks


def offload(arc: Archive, key: str, rows: Sequence[CatalogRow]) -> list[CatalogRow]:
    """`rows`, each whose inline chunks exceed INLINE_MAX bytes replaced by a reference into the
    object `key` (relative to the archive root), which is written durably before this returns;
    the others unchanged. Nothing is written when no row needs it."""
    out, parts, offset = [], [], 0
    for row in rows:
        if sum(len(data) for _, data in row.chunks) <= INLINE_MAX:
            out.append(row)
            continue
        blob = frame(row.chunks)
        ref = ChunksRef(key, offset, len(blob), hashlib.sha256(blob).hexdigest(), tuple(t for t, _ in row.chunks))
        out.append(dataclasses.replace(row, chunks=[], chunks_ref=ref))
        parts.append(blob)
        offset += len(blob)
    if parts:
        with store_errors(arc.url):
            put_atomic(arc.loc, arc.loc.path(key), b"".join(parts))
    return out


def row_chunks(arc: Archive, row: CatalogRow) -> list[tuple[str, bytes]]:
    """The row's ancillary chunks in file order, byte for byte: inline, or one range read of its
    PNG metadata object (IntegrityError naming the object when it is missing, short or changed)."""
    ref = row.chunks_ref
    if ref is None:
        return list(row.chunks)
    blob = arc.read_ref(row.id, ref, ref.sha256, "PNG metadata")
    return unframe(blob, f"PNG metadata of {row.id!r}: object {ref.key} in {arc.url}")


def with_chunks(arc: Archive, row: CatalogRow) -> CatalogRow:
    """`row` with its chunks inline, for rebuilding its PNG (`row` itself when they already are)."""
    if row.chunks_ref is None:
        return row
    return dataclasses.replace(row, chunks=row_chunks(arc, row), chunks_ref=None)
