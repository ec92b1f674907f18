"""Shared pieces of the serving tests and benchmark: a small archive built through the Archive API.

Latents of several sizes (two share a shape, so the executor can batch them), an RGBA image
with text chunks, a kept original and a failed row, so reads cover every path of `lbdask read`.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

from lbdask.archive import Archive, CatalogRow
from lbdask.image import pngio
from lbdask.latent.codec import LatentCodec, compressed_size
from tests.support.cluster import grainy, png_bytes

#: The raw bytes of the failed input "broken.png" (a truncated PNG), stored as a migration does.
BROKEN_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR truncated"


def latent_row(arc: Archive, model, image_id: str, data: bytes, rgb: np.ndarray, mode: str, bits: int) -> CatalogRow:
    """Encode `rgb`, write it as its own one-latent shard, return its catalog row (not committed)."""
    enc = LatentCodec(bits).encode(model.encode(rgb[None])[0])
    bucket = arc.bucket_name(bits, *enc.data.shape)
    arc.ensure_bucket(bucket, bits, *enc.data.shape)
    [index] = arc.write_shard(bucket, arc.allocate_shards(bucket, 1), [enc])
    return CatalogRow(id=image_id, status="latent", bucket=bucket, index=index, source_size=len(data),
                      source_sha256=hashlib.sha256(data).hexdigest(), width=rgb.shape[1], height=rgb.shape[0],
                      mode=mode, model_fingerprint=model.fingerprint, bits=bits, lo=enc.lo, hi=enc.hi,
                      checksum=enc.checksum, stored_bytes=compressed_size(enc.data),
                      chunks=list(pngio.probe(data).chunks))


def kept_and_failed_rows(arc: Archive, kept: bytes, size: tuple[int, int], broken: bytes) -> list[CatalogRow]:
    """A kept RGBA PNG (`size` = width, height) and a failed input with its raw bytes, both stored
    in the originals object of batch b0 as a migration writes them (rows not committed)."""
    refs = arc.put_originals("b0", {"kept.png": kept, "broken.png": broken})
    return [CatalogRow(id="kept.png", status="kept", reason="alpha", source_size=len(kept),
                       source_sha256=hashlib.sha256(kept).hexdigest(), width=size[0], height=size[1], mode="RGBA",
                       stored_bytes=len(kept), original=refs["kept.png"]),
            CatalogRow(id="broken.png", status="failed", reason="corrupt PNG", source_size=len(broken),
                       source_sha256=hashlib.sha256(broken).hexdigest(), stored_bytes=len(broken),
                       original=refs["broken.png"])]


def build_serving_archive(dest: str, model, n: int = 12, size: int = 32) -> list[str]:
    """An archive of `n` grainy latents (size x size, RGB), one RGBA latent with a text chunk,
    one kept PNG and one failed row (with its raw bytes, as `migrate` writes it); returns the ids
    that read back as images."""
    arc = Archive.create(dest, model.model_info, shard_size=1)
    rows = []
    for i in range(n):
        rgb = grainy(200 + i, size)
        rows.append(latent_row(arc, model, f"g/{i:03d}.png", png_bytes(rgb), rgb, "RGB", 8))
    rgba = np.dstack([grainy(7, size + 8), np.full((size + 8, size + 8), 255, np.uint8)])
    rows.append(latent_row(arc, model, "rgba.png", png_bytes(rgba, pnginfo=_text("a prompt")), rgba[..., :3],
                           "RGBA", 16))
    kept = png_bytes(np.zeros((24, 24, 4), np.uint8), pnginfo=_text("kept"))
    rows += kept_and_failed_rows(arc, kept, (24, 24), BROKEN_PNG)
    arc.commit("b0", rows)
    return [r.id for r in rows if r.status != "failed"]


def corrupt_latent(dest: str, image_id: str, model) -> None:
    """Overwrite one id's one-latent shard with another latent of the same shape: its checksum no
    longer matches, every other id is untouched."""
    arc = Archive.open(dest, mode="a")
    row = arc.get_row(image_id)
    other = LatentCodec(row.bits).encode(np.asarray(model.encode(grainy(999, row.height)[None])[0]))
    arc.write_shard(row.bucket, row.index, [other])


def wait_for(predicate, timeout: float = 30.0) -> bool:
    """Poll `predicate` every 0.2 s until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _text(value: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", value)
    return info
