"""Inputs a latent would lose data of are kept whole: animated PNGs."""
import io

import numpy as np
from PIL import Image

from lbdask.migrate.scan import describe
from lbdask.representation.fate import KEEP_ANIMATED, pre_decode_outcome
from lbdask.representation.settings import load_job_settings


def png(frames: int) -> bytes:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="PNG", save_all=frames > 1, append_images=images[1:], duration=100)
    return out.getvalue()


def test_an_animated_png_is_kept_whole_with_its_own_reason(corpus_dir):
    crop = Image.open(sorted(corpus_dir.glob("*.png"))[0]).convert("RGB").crop((0, 0, 64, 48))
    out = io.BytesIO()
    crop.save(out, format="PNG", save_all=True, append_images=[crop.rotate(90), crop.rotate(180)], duration=100)
    item = describe("anim.png", out.getvalue())
    assert item.animated and b"acTL" in out.getvalue()
    outcome = pre_decode_outcome(item, load_job_settings())
    assert (outcome.status, outcome.reason) == ("kept", KEEP_ANIMATED)


def test_a_still_png_is_not_animated():
    item = describe("still.png", png(1))
    assert not item.animated and pre_decode_outcome(item, load_job_settings()) is None


def test_a_source_that_changes_after_the_scan_is_recorded_as_stored(tmp_path):
    """The row's sha256 is of the bytes stored, so the kept original stays readable."""
    from lbdask.archive import Archive
    from lbdask.migrate.plan import plan_batches
    from lbdask.migrate.scan import scan_group
    from lbdask.migrate.tasks import read_png
    from lbdask.representation.shard import write_shard
    from tests.support.archive import MODEL

    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    palette = Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 7).convert("P")
    palette.save(src / "p.png")
    settings = load_job_settings()
    items = scan_group(str(src), {}, ["p.png"])
    palette.rotate(90, expand=True).save(src / "p.png")  # edited between scan and batch
    Archive.create(dest, MODEL)
    [batch] = plan_batches(items, settings, 16)
    write_shard(dest, {}, read_png(str(src), {}, batch, settings), None, settings)
    arc = Archive.open(dest)
    row = arc.get_row("p.png")
    assert row.reason == "palette" and arc.read_original(row) == (src / "p.png").read_bytes()
