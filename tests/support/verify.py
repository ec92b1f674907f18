"""A small archive for the verification tests, migrated by hand through the Archive API:
two latents (one shard, decode hash and PSNR recorded) and one kept PNG, with their source."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lbdask.archive import Archive, CatalogRow
from lbdask.fidelity.rate_distortion import load_sources
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec, compressed_size
from lbdask.latent.decode import decode_latent, decode_sha256
from tests.support.cluster import png_bytes


def build_verify_archive(dest: str, src: Path, model, corpus_dir: Path, size: int = 64) -> list[CatalogRow]:
    """Write SRC (img0..img2.png, crops of the corpus) and DEST (a folder or s3://...); returns the rows."""
    src.mkdir(parents=True, exist_ok=True)
    crops = [s.rgb for s in load_sources(corpus_dir, crop=size, limit=3)]
    sources = {f"img{i}.png": png_bytes(c) for i, c in enumerate(crops)}
    for name, data in sources.items():
        (src / name).write_bytes(data)
    arc = Archive.create(dest, model_info=model.model_info)
    codec = LatentCodec(8)
    z = model.encode(np.stack(crops[:2]))
    encoded = [codec.encode(zi) for zi in z]
    bucket = Archive.bucket_name(8, *z.shape[1:])
    arc.ensure_bucket(bucket, 8, *z.shape[1:])
    indices = arc.write_shard(bucket, arc.allocate_shards(bucket, 1), encoded)
    decoded = [decode_latent(model, codec.decode(e), (size, size)) for e in encoded]
    rows = []
    for i, (enc, index, rgb) in enumerate(zip(encoded, indices, decoded)):
        name = f"img{i}.png"
        rows.append(CatalogRow(
            id=name, status="latent", bucket=bucket, index=index, source_size=len(sources[name]),
            source_sha256=hashlib.sha256(sources[name]).hexdigest(), width=size, height=size, mode="RGB",
            psnr=psnr(crops[i], rgb), model_fingerprint=model.fingerprint, bits=8, lo=enc.lo, hi=enc.hi,
            checksum=enc.checksum, stored_bytes=compressed_size(enc.data), device_class=model.device_class,
            decode_sha256=decode_sha256(rgb), batch_id="b0"))
    kept = {"img2.png": sources["img2.png"]}
    ref = arc.put_originals("b0", kept)["img2.png"]
    rows.append(CatalogRow(id="img2.png", status="kept", reason="test", source_size=len(kept["img2.png"]),
                           source_sha256=hashlib.sha256(kept["img2.png"]).hexdigest(), width=size, height=size,
                           mode="RGB", stored_bytes=ref.size, original=ref, batch_id="b0"))
    arc.commit("b0", rows)
    return rows
