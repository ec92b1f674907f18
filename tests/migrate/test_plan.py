"""Migration planning: routing by header, stable batches, settings validation, scan of a folder."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from lbdask.archive import Archive
from lbdask.errors import ConfigError
from lbdask.migrate.job import prepare_buckets
from lbdask.migrate.plan import plan_batches
from lbdask.migrate.scan import scan_group
from lbdask.representation.fate import post_encode_outcome, pre_decode_outcome
from lbdask.representation.settings import load_job_settings
from lbdask.representation.sources import SourceItem, list_source_ids
from lbdask.storage import open_location
from tests.support.archive import MODEL

SETTINGS = dataclasses.replace(load_job_settings(), batch_size=2, min_side=32, max_pixels=100_000, bomb_pixels=1_000_000)


def item(image_id: str, w: int = 64, h: int = 64, mode: str = "RGB", bits: int = 8, **kw) -> SourceItem:
    return SourceItem(image_id, 100, "0" * 64, w, h, mode, bits, mode in ("RGBA", "LA"), **kw)


@pytest.mark.parametrize(
    "it,expected",
    [
        (item("a"), None),
        (item("a", mode="RGBA"), None),  # decided after decoding: opaque or not
        (item("a", mode="P"), ("kept", "palette")),
        (item("a", mode="L"), ("kept", "greyscale")),
        (item("a", mode="LA"), ("kept", "greyscale")),
        (item("a", bits=16), ("kept", "16-bit")),
        (item("a", w=31), ("kept", "too-small")),
        (item("a", w=1000, h=101), ("kept", "too-large")),
        (item("a", w=1001, h=1000), ("failed", None)),
        (item("a", error="corrupt PNG: x"), ("failed", "corrupt PNG: x")),
    ],
)
def test_pre_decode_outcome(it, expected):
    outcome = pre_decode_outcome(it, SETTINGS)
    if expected is None:
        assert outcome is None
    else:
        assert outcome.status == expected[0]
        assert expected[1] is None or outcome.reason == expected[1]


@pytest.mark.parametrize(
    "psnr,latent_bytes,ratio,expected",
    [
        (35.0, 900, 1.0, None),                       # smaller and faithful: stored as a latent
        (35.0, 1001, 1.0, "no-saving"),               # bigger than its PNG: the PNG stays
        (35.0, 600, 0.5, "no-saving"),                # a stricter ratio asks for 2x saving
        (SETTINGS.min_psnr - 0.1, 500, 1.0, "fidelity"),
        (SETTINGS.min_psnr - 0.1, 5000, 1.0, "no-saving"),  # both: no saving is the decisive reason
    ],
)
def test_post_encode_outcome(psnr, latent_bytes, ratio, expected):
    settings = dataclasses.replace(SETTINGS, max_latent_ratio=ratio)
    outcome = post_encode_outcome(psnr, latent_bytes, 1000, settings)
    assert (outcome and outcome.reason) == expected
    assert outcome is None or outcome.status == "kept"


def test_batches_group_by_padded_shape_and_are_stable_when_committed_batches_drop_out():
    items = [item(f"r{i}", 64, 64) for i in range(5)] + [item("odd", 60, 61), item("g", mode="L")]
    batches = plan_batches(items, SETTINGS, pad_multiple=8)
    shapes = [b.padded for b in batches if b.encodes]
    assert sorted(set(shapes)) == [(64, 64)]  # 61x60 pads to the same bucket as 64x64
    assert sum(len(b.items) for b in batches) == len(items)
    assert all(len(b.items) <= 2 for b in batches)
    keep = [b for b in batches if not b.encodes]
    assert [i.id for b in keep for i in b.items] == ["g"]
    # a rerun after the first batch committed plans the same remaining batches (same ids)
    first = batches[0]
    rest = [i for i in items if i.id not in {m.id for m in first.items}]
    again = plan_batches(list(reversed(rest)), SETTINGS, pad_multiple=8)
    assert [b.batch_id for b in again] == [b.batch_id for b in batches[1:]]


def test_settings_validation_names_the_bad_value():
    with pytest.raises(ConfigError, match="batch_size"):
        SETTINGS.with_overrides(batch_size=0)
    with pytest.raises(ConfigError, match="archive.yaml: batch size 1000 is larger than the shard size 64"):
        load_job_settings(batch_size=1000)
    assert SETTINGS.with_overrides(min_psnr=None).min_psnr == SETTINGS.min_psnr


def test_scan_lists_recursively_and_probes_without_failing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "a" / "b" / "x.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    (tmp_path / "skip.jpg").write_bytes(b"nope")
    loc = open_location(str(tmp_path))
    listing = list_source_ids(loc)
    sizes = listing.sizes
    assert list(sizes) == ["a/b/x.png", "bad.png"] and listing.refused == {}
    items = {i.id: i for i in scan_group(str(tmp_path), {}, list(sizes))}
    assert (items["a/b/x.png"].width, items["a/b/x.png"].height, items["a/b/x.png"].mode) == (20, 10, "RGB")
    assert items["a/b/x.png"].size == sizes["a/b/x.png"] and len(items["a/b/x.png"].sha256) == 64
    assert "not a PNG" in items["bad.png"].error




def test_listing_refuses_what_is_not_a_regular_file_inside_src(tmp_path):
    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not yours")
    (src / "real.png").write_bytes(b"12345")
    (src / "out.png").symlink_to(outside / "secret.png")
    (src / "sub" / "in.png").symlink_to(src / "real.png")   # a link that stays inside SRC is read
    (src / "dangling.png").symlink_to(src / "gone.png")
    (src / "linkdir.png").symlink_to(outside, target_is_directory=True)
    os.mkfifo(src / "pipe.png")
    listing = list_source_ids(open_location(str(src)))
    assert listing.sizes == {"real.png": 5, "sub/in.png": 5}
    assert set(listing.refused) == {"out.png", "dangling.png", "linkdir.png", "pipe.png"}
    assert listing.refused["out.png"].startswith("symlink pointing outside SRC")
    assert listing.refused["pipe.png"] == "not a regular file: a fifo"
    assert listing.refused["dangling.png"] == "broken symlink"
    assert "outside SRC" in listing.refused["linkdir.png"]
    # refused entries are never opened: a scan of them would block on the fifo
    outcome = pre_decode_outcome(SourceItem("pipe.png", 0, refused=listing.refused["pipe.png"]), SETTINGS)
    assert (outcome.status, outcome.reason) == ("refused", "not a regular file: a fifo")


def test_small_images_batch_up_to_the_shard_size_while_their_pixels_fit():
    small = [item(f"s{i:03d}", 64, 64) for i in range(100)]
    large = [item(f"l{i}", 256, 256) for i in range(5)]
    settings = dataclasses.replace(SETTINGS, batch_size=2, batch_pixels=2 * 256 * 256)
    sizes = {b.padded: [len(x.items) for x in plan_batches(small + large, settings, 8, shard_size=16)
                        if x.padded == b.padded] for b in plan_batches(small + large, settings, 8, shard_size=16)}
    assert sizes == {(64, 64): [16] * 6 + [4], (256, 256): [2, 2, 1]}  # 16 = the shard size; 2 = batch_size
    assert [len(b.items) for b in plan_batches(small, settings, 8, max_batch_pixels=5 * 64 * 64, shard_size=16)] \
        == [5] * 20  # the workers' memory bound still cuts them
    off = dataclasses.replace(settings, batch_pixels=0)
    assert {len(b.items) for b in plan_batches(small, off, 8, shard_size=16)} == {2}
    assert [len(b.items) for b in plan_batches(small, settings, 8)] == [2] * 50  # no shard size given: batch_size


def test_the_driver_allocates_the_plans_shards_once_per_bucket_and_a_rerun_never_reuses_them(tmp_path):
    arc = Archive.create(str(tmp_path / "arc"), MODEL)
    settings = dataclasses.replace(SETTINGS, latent_bits="auto")  # three precisions: three buckets per shape
    plan = plan_batches([item(f"s{i:03d}", 64, 64) for i in range(9)] + [item("w", 128, 64)], settings, 8)
    calls = []
    allocate = arc.allocate_shards
    arc.allocate_shards = lambda bucket, n: calls.append((bucket, n)) or allocate(bucket, n)
    prepare_buckets(arc, plan, {**MODEL, "pad_multiple": 8}, settings)
    assert sorted(n for _, n in calls) == [1, 1, 1, 5, 5, 5]  # one call per bucket, not one per batch
    taken = [(b.padded, bits, shard) for b in plan for bits, shard in b.shards.items()]
    assert len(taken) == 6 * 3 and len(set(taken)) == len(taken)
    again = plan_batches([item(f"s{i:03d}", 64, 64) for i in range(9)], settings, 8)
    prepare_buckets(Archive.open(str(tmp_path / "arc"), mode="a"), again, {**MODEL, "pad_multiple": 8}, settings)
    assert not {(b.padded, bits, shard) for b in again for bits, shard in b.shards.items()} & set(taken)
