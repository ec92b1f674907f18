"""A rerun on a complete archive says "nothing to do" before any cluster starts or model loads;
a job compacts the catalog while it commits, not only at its end, and measures what it added
without listing the archive whole."""
import asyncio
import io

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from PIL import Image

from lbdask.archive import Archive, CatalogRow, spill
from lbdask.archive.periodic import PeriodicCompactor
from lbdask.cli import main
from lbdask.cli.migrate import format_summary
from lbdask.cluster.settings import load_cluster_settings
from lbdask.migrate import job
from lbdask.representation import listing
from lbdask.representation.listing import ListedSource
from lbdask.representation.settings import load_job_settings
from lbdask.representation.sources import list_source_ids
from lbdask.storage import open_location
from tests.support.archive import MODEL
from tests.support.cluster import IN_PROCESS_JOB, TAEF2_WEIGHTS, grainy, png_bytes
from tests.support.store_requests import local_listings, whole_archive


def committed_as_listed(src, dest):
    """An archive (of the default model's name) holding a row for every source, as a finished job left it."""
    arc = Archive.create(dest, {**MODEL, "name": load_job_settings().model})
    listing = list_source_ids(open_location(str(src)))
    arc.commit("b0", [CatalogRow(id=i, status="kept", reason="too-small", source_size=n, source_stamp=listing.stamps[i])
                      for i, n in listing.sizes.items()])
    arc.compact()


def test_a_rerun_on_a_complete_archive_starts_no_cluster_and_loads_no_model(tmp_path, monkeypatch, capsys):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    for i in range(3):
        (src / f"img{i}.png").write_bytes(png_bytes(grainy(i, 16)))
    committed_as_listed(src, dest)
    started = []

    def no_cluster(*args, **kwargs):  # job_session starts the cluster and loads the model on it
        started.append(args)
        raise RuntimeError("a cluster was started")

    monkeypatch.setattr(job, "job_session", no_cluster)
    assert main(["migrate", str(src), dest, "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to do: all 3 images under {src} are already in {dest}")
    assert not started
    (src / "new.png").write_bytes(png_bytes(grainy(9, 16)))  # work left: the job does start its cluster
    assert main(["migrate", str(src), dest, "--no-progress"]) == 1
    assert len(started) == 1


def test_the_periodic_compactor_folds_every_n_committed_batches_one_at_a_time(tmp_path):
    arc = Archive.create(str(tmp_path / "arc"), MODEL)
    lines = []
    with PeriodicCompactor(arc, 2, lines.append) as compactor:
        for n in range(5):
            arc.commit(f"b{n}", [CatalogRow(id=f"{n}.png", status="refused")])
            compactor.committed()
            compactor.wait()  # let each compaction finish, so that the next one may start
    assert compactor.runs == 2 and arc.catalog.batch_names() == ["b4"]
    assert lines == ["compacted 2 batch(es) during the job (catalog generation 1)",
                     "compacted 2 batch(es) during the job (catalog generation 2)"]
    assert PeriodicCompactor(arc, 0, lines.append).committed(100) is None and arc.catalog.batch_names() == ["b4"]


def test_a_failed_compaction_during_the_job_is_logged_not_raised(tmp_path, monkeypatch):
    arc = Archive.create(str(tmp_path / "arc"), MODEL)
    monkeypatch.setattr(arc, "compact", lambda: 1 / 0)
    lines = []
    with PeriodicCompactor(arc, 1, lines.append) as compactor:
        compactor.committed()
    assert lines == ["compaction during the job failed (the job goes on): ZeroDivisionError: division by zero"]


def palette_png(seed: int) -> bytes:
    """A small palette PNG: kept as it is (no encode), so the job's batches run no model."""
    out = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 7, (16, 16), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").convert("P").save(out, "PNG")
    return out.getvalue()


@pytest.mark.slow
@gen_cluster(nthreads=[("127.0.0.1", 2)], timeout=300, clean_kwargs=IN_PROCESS_JOB)
async def test_a_migration_compacts_while_it_commits(s, a, tmp_path):
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    src.mkdir()
    for i in range(40):
        (src / f"img{i:02d}.png").write_bytes(palette_png(i))
    settings = load_job_settings(batch_size=2, batch_pixels=0, compact_every_batches=2, weights=str(TAEF2_WEIGHTS))
    req = job.MigrationRequest(str(src), dest, settings, load_cluster_settings(), scheduler=s.address, progress=False)
    lines = []
    with local_listings() as seen:
        record = await asyncio.to_thread(job.run_migration, req, lines.append)
    assert record["images_processed"] == 40 and record["batches"] == 20
    # what the job added is measured without listing the archive whole (as `bytes_on_store` did at
    # its start and end) and is what a du sees, less the archive's creation, before the job's start
    assert whole_archive(seen, dest) == [] and any(entry.startswith(f"du {dest}/catalog/") for entry in seen)
    arc = Archive.open(dest)
    on_store = arc.bytes_on_store()
    on_store["latents"] -= arc.loc.fs.size(arc.loc.path("latents", "zarr.json"))
    assert record["bytes_stored_by_part"] == on_store and record["bytes_stored"] == sum(on_store.values())
    assert f"-> stored {sum(on_store.values()):,} (what this job added to the store, measured)" in format_summary(record)
    during = [line for line in lines if "during the job" in line]
    assert during and all(line.startswith("compacted ") for line in during)
    arc = Archive.open(dest)
    assert arc.catalog.manifest().generation >= len(during)  # one generation each, and the final one
    assert not arc.catalog.batch_names() and len(list(arc.rows())) == 40


class Counted(ListedSource):
    """A listing entry that counts the entries alive (made, also when unpickled from a spill file)."""

    alive = 0

    def __new__(cls, *args, **kwargs):
        Counted.alive += 1
        return super().__new__(cls)

    def __del__(self):
        Counted.alive -= 1


def test_the_rerun_check_holds_a_bounded_number_of_listing_entries(tmp_path, monkeypatch, capsys):
    """200 sources, a spill chunk of 10: the listing is sorted through the spill and merge-joined
    with the catalog; at no spill and no catalog row are more than a chunk's or the merge's
    blocks of entries alive (the listing held whole: all 200)."""
    src, dest = tmp_path / "src", str(tmp_path / "arc")
    for i in range(200):
        (src / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 7}" / f"img{i:03d}.png").write_bytes(b"x" * (i + 1))
    committed_as_listed(src, dest)
    for name, value in (("CHUNK_ROWS", 10), ("FANIN", 4), ("BLOCK_ROWS", 2)):
        monkeypatch.setattr(spill, name, value)
    monkeypatch.setattr(listing, "ListedSource", Counted)
    seen = []
    monkeypatch.setattr(spill, "on_spill", lambda n: seen.append(Counted.alive))
    rows = Archive.rows
    monkeypatch.setattr(Archive, "rows", lambda arc: (seen.append(Counted.alive) or row for row in rows(arc)))
    monkeypatch.setattr(job, "job_session", lambda *a, **k: 1 / 0)  # a no-op rerun starts no cluster
    assert main(["migrate", str(src), dest, "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to do: all 200 images under {src} are already in {dest}")
    assert len(seen) == 20 + 200 and max(seen) <= 10 + 4 * 2 + 4, max(seen)
