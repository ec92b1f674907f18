"""Cutting a retier plan into chunks: fresh shards for every latent-writing chunk, allocated once per bucket."""
from __future__ import annotations

import dataclasses

from lbdask.archive import Archive, CatalogRow
from lbdask.representation.settings import load_job_settings
from lbdask.retier.apply import ApplyRequest, make_chunks
from lbdask.retier.moves import MoveContext
from lbdask.tiering.plan import Plan
from tests.support.archive import MODEL


def request(dest: str, sizes: dict[str, tuple[int, int]], batch_size: int = 2) -> ApplyRequest:
    plan = Plan(dest, 0.0, {})
    for image_id in sorted(sizes):
        plan.add("demote", image_id, 1)
    plan.add("promote", "p.png", 1)
    rows = {i: CatalogRow(i, "kept", width=w, height=h) for i, (w, h) in sizes.items()}
    settings = dataclasses.replace(load_job_settings(), latent_bits="auto")  # three precisions: three buckets per shape
    return ApplyRequest(dest, plan, rows, MoveContext(settings, 0.0), batch_size)


def test_each_bucket_is_allocated_once_per_run_and_no_shard_is_handed_out_twice(tmp_path):
    dest = str(tmp_path / "arc")
    arc = Archive.create(dest, MODEL)
    sizes = {f"s{i}.png": (64, 64) for i in range(5)} | {"w.png": (128, 64)}
    calls = []
    allocate = arc.allocate_shards
    arc.allocate_shards = lambda bucket, n: calls.append((bucket, n)) or allocate(bucket, n)
    chunks = make_chunks(arc, request(dest, sizes), "20260101T000000", pad_multiple=8)
    demotes = [c for c in chunks if c.kind == "demote"]
    assert sorted(len(c.ids) for c in demotes) == [1, 1, 2, 2]  # 5 small in chunks of 2, 1 wide alone
    assert sorted(n for _, n in calls) == [1, 1, 1, 3, 3, 3]  # one call per bucket, not one per chunk
    assert all(len(c.shards) == 3 for c in demotes) and [c.shards for c in chunks if c.kind == "promote"] == [{}]
    taken = [(c.padded, bits, shard) for c in demotes for bits, shard in c.shards.items()]
    assert len(set(taken)) == len(taken) == 12
    again = make_chunks(Archive.open(dest, mode="a"), request(dest, sizes), "20260101T000001", pad_multiple=8)
    assert not {(c.padded, b, s) for c in again for b, s in c.shards.items()} & set(taken)  # a later run never reuses one
