"""Small images fill whole shards: a batch of them holds up to the archive's shard size
(`batch_pixels`), not `batch_size` images in a shard of 64 slots (issue 25)."""
import asyncio
from pathlib import Path

import pytest
from distributed.utils_test import gen_cluster

from lbdask.archive import Archive
from lbdask.cluster.settings import load_cluster_settings
from lbdask.migrate import job
from lbdask.models import load_model
from lbdask.representation.settings import load_job_settings
from tests.support.cluster import IN_PROCESS_JOB, TAEF2_WEIGHTS, write_grainy_source


def shard_fill(dest: str) -> tuple[int, int]:
    """(latent rows, slots of the shard objects on the store): every written shard counts in full."""
    arc = Archive.open(dest)
    shards = [p for p in Path(dest, "latents").glob("*/c/*/0/0/0") if p.is_file()]
    return sum(r.status == "latent" for r in arc.rows()), len(shards) * arc.shard_size


@pytest.mark.slow
@gen_cluster(nthreads=[("127.0.0.1", 2)], timeout=300, clean_kwargs=IN_PROCESS_JOB)
async def test_migrating_small_images_fills_whole_shards(s, a, tmp_path):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    ids = write_grainy_source(src, 32)  # 64 x 64: 8 per batch would use 8 of each shard's 16 slots
    settings = load_job_settings(weights=str(TAEF2_WEIGHTS), min_psnr=20, latent_bits=8)
    Archive.create(dest, load_model(settings.model, weights=TAEF2_WEIGHTS, device="cpu").model_info, shard_size=16)
    req = job.MigrationRequest(str(src), dest, settings, load_cluster_settings(), scheduler=s.address, progress=False)
    record = await asyncio.to_thread(job.run_migration, req, lambda line: None)
    latents, slots = shard_fill(dest)
    assert record["images_processed"] == len(ids) and latents == len(ids)
    assert latents >= 0.9 * slots, f"{latents} latents in {slots // 16} shards of 16 slots"
    assert record["batches"] == 2
