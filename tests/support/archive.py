"""Small archives made through the Archive API, with random latents of a made-up model (no weights)."""
import gzip

import numpy as np

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.rows import dump_rows
from lbdask.latent.codec import LatentCodec

MODEL = {"name": "tiny", "fingerprint": "f" * 64, "latent_channels": 4, "downsample": 8, "config": {}}
SHAPE = (4, 6, 5)


def encoded(n, bits=8, seed=0):
    rng = np.random.default_rng(seed)
    codec = LatentCodec(bits)
    return [codec.encode(rng.normal(size=SHAPE).astype(np.float32)) for _ in range(n)]


def write_batch(arc, batch_id, ids, seed=0, shard=None):
    """What one migration task does: its own shard, originals object and commit."""
    bucket = arc.bucket_name(8, *SHAPE)
    encs = encoded(len(ids), seed=seed)
    if shard is None:
        shard = arc.allocate_shards(bucket, 1)
    indices = arc.write_shard(bucket, shard, encs)
    rows = [CatalogRow(id=i, status="latent", bucket=bucket, index=k, bits=8, lo=e.lo, hi=e.hi,
                       checksum=e.checksum, source_size=1000, chunks=[("tEXt", b"prompt\x00" + i.encode())])
            for i, k, e in zip(ids, indices, encs)]
    assert arc.commit(batch_id, rows)
    return encs


def new_archive(dest, shard_size=4):
    arc = Archive.create(dest, MODEL, shard_size=shard_size)
    arc.ensure_bucket(arc.bucket_name(8, *SHAPE), 8, *SHAPE)
    return arc


def line_size(row) -> int:
    """Bytes of `row` in a batch or index object, before gzip (its JSON line as `dump_rows` writes it)."""
    return len(gzip.decompress(dump_rows([row])))
