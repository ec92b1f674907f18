"""A small archive made with the TAEF2 model: two latents, one kept PNG, one failed input."""
import hashlib
import io

import numpy as np
from PIL import Image, PngImagePlugin

from lbdask.archive import Archive, CatalogRow
from lbdask.image import pngio
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec, compressed_size
from tests.support.serve import kept_and_failed_rows

SOURCE_IMAGE = "flux_girl_in_field.png"


def png_bytes(pixels, mode, text=None):
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
        info.add_itxt(k + "-i", v, zip=True)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def small_rgb(corpus_dir, w, h):
    with Image.open(corpus_dir / SOURCE_IMAGE) as im:
        return np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))


def build_archive(dest, corpus_dir, taef2_dir):
    """A small archive made through the Archive API: two latents, one kept PNG, one failure.

    Returns (archive url, {id: source bytes}, model).
    """
    from lbdask.models import load_model

    model = load_model("taef2", weights=taef2_dir, device="cpu")
    arc = Archive.create(dest, model.model_info, shard_size=4)
    photo = small_rgb(corpus_dir, 96, 72)
    opaque = np.dstack([small_rgb(corpus_dir, 64, 64), np.full((64, 64), 255, np.uint8)])
    sources = {
        "dir/photo.png": (png_bytes(photo, "RGB", {"prompt": "a girl in a field"}), photo, "RGB", 8),
        "opaque.png": (png_bytes(opaque, "RGBA"), opaque[..., :3], "RGBA", 16),
    }
    rows = []
    for image_id, (data, rgb, mode, bits) in sources.items():
        z = model.encode(rgb[None])[0]
        enc = LatentCodec(bits).encode(z)
        bucket = arc.bucket_name(bits, *enc.data.shape)
        arc.ensure_bucket(bucket, bits, *enc.data.shape)
        [index] = arc.write_shard(bucket, arc.allocate_shards(bucket, 1), [enc])
        back = model.decode(LatentCodec(bits).decode(enc)[None], size=rgb.shape[:2])[0]
        rows.append(CatalogRow(
            id=image_id, status="latent", bucket=bucket, index=index, source_size=len(data),
            source_sha256=hashlib.sha256(data).hexdigest(), width=rgb.shape[1], height=rgb.shape[0], mode=mode,
            psnr=psnr(rgb, back), model_fingerprint=model.fingerprint, bits=bits, lo=enc.lo, hi=enc.hi,
            checksum=enc.checksum, stored_bytes=compressed_size(enc.data), chunks=list(pngio.probe(data).chunks)))
    transparent = np.zeros((40, 40, 4), np.uint8)
    transparent[10:30, 10:30] = (200, 30, 30, 128)
    kept = png_bytes(transparent, "RGBA", {"prompt": "a red square"})
    broken = pngio.PNG_SIGNATURE + b"\0\0\0\rIHDR but then nothing a decoder could use"
    rows += kept_and_failed_rows(arc, kept, (40, 40), broken)
    arc.commit("b0", rows)
    sources = {k: v[0] for k, v in sources.items()} | {"kept.png": kept, "broken.png": broken}
    return dest, sources, model
