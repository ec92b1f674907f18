"""`lbdask retier` re-encode: latents of model X -> model Y from the best copy, every id still
readable (each row decoded with the model its fingerprint names), the fidelity change recorded.

Model Y is TAEF2 under a second registry entry whose latent scaling differs: a different
fingerprint, and a latent of one decoded with the other gives other pixels - so reading a
re-encoded row with the archive's model would fail the `decode_sha256` checks below.
"""
from __future__ import annotations

import shutil
import time

import pytest

from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.model_table import model_table
from lbdask.image import pngio
from lbdask.image.quality import psnr
from lbdask.latent.decode import decode_sha256
from tests.support.cluster import TAEF2_WEIGHTS
from tests.support.retier import LATENT_IDS, old_shards, read_all, record_reads, retier, write_model_y_configs, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("jobs_cluster")]  # jobs on a cluster in this process


@pytest.fixture
def arc(retier_archive, tmp_path):
    root, dest = retier_archive
    shutil.copytree(dest, tmp_path / "arc")
    return root, str(tmp_path / "arc")


def rows(dest):
    return {r.id: r for r in Archive.open(dest).rows()}


def reencode_policy(tmp_path, source: str | None = None, **extra: str) -> str:
    fields = {"enabled": "true", "from": "taef2", "to": "taef2-y", **extra}
    if source:
        fields["source"] = f'"{source}"'
    body = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return write_policy(tmp_path / "p.yaml", "demote: {enabled: false}\npromote: {enabled: false}\n"
                                             f"reencode: {{{body}}}\n")


def check_swept(dest: str, shards: list[tuple[str, int]], capsys) -> None:
    """Model X's shards are gone and their bytes reported by the run and `lbdask report`;
    the buckets' metadata stays; `verify --all` (every checksum, every decode) passes."""
    from lbdask.archive.history import read_retier_runs

    assert shards and old_shards(dest) == []
    swept = read_retier_runs(Archive.open(dest))[-1]["swept"]
    assert swept["latent_shards"] == len(shards) and swept["latent_bytes"] == sum(n for _, n in shards)
    assert swept["pinned_shards"] == 0
    arc = Archive.open(dest)
    buckets = {p.split("/latents/", 1)[1].split("/")[0] for p, _ in shards}
    assert all(arc.loc.fs.exists(arc.loc.path("latents", b, "zarr.json")) for b in buckets)
    capsys.readouterr()
    assert cli.main(["report", dest]) == 0
    assert f"({swept['latent_bytes']:,} of latent shards)" in capsys.readouterr().out
    assert cli.main(["verify", dest, "--all", "--weights", str(TAEF2_WEIGHTS)]) == 0


def check_reencoded(dest: str, before: dict[str, bytes], old_fp: str) -> dict:
    """Every id reads back; re-encoded rows carry Y's fingerprint and decode (as read) to what
    their new latent decoded to when written; the kept rows are untouched."""
    now = rows(dest)
    table = model_table(Archive.open(dest))
    assert [e["name"] for e in table] == ["taef2", "taef2-y"]
    y = table[1]["fingerprint"]
    after = read_all(dest)
    assert set(after) == set(before)
    for image_id in LATENT_IDS:
        row = now[image_id]
        assert row.model_fingerprint == y and row.bucket.startswith(f"m{y[:16]}-b"), image_id
        assert row.reencoded["from"] == old_fp and row.reencoded["psnr_after"] == row.psnr
        rgb = pngio.decode(after[image_id], 10**8)[0]
        assert decode_sha256(rgb) == row.decode_sha256, image_id  # decoded with Y, not the archive's model
        assert psnr(pngio.decode(before[image_id], 10**8)[0], rgb) >= 20, image_id
    for image_id in set(now) - set(LATENT_IDS):
        assert after[image_id] == before[image_id]
    return now


def test_reencode_on_a_folder_from_source_pixel_tier_and_old_latent(arc, model_y, tmp_path, capsys):
    root, dest = arc
    src = tmp_path / "src"
    shutil.copytree(root / "src" / "lat", src)
    # l0: promoted first and its source changed -> the pixel copy; l1 changed, l2 gone -> the old latent
    record_reads(dest, {"l0.png": (5, time.time())})
    promote = write_policy(tmp_path / "promote.yaml", "demote: {enabled: false}\n"
                                                      "promote: {enabled: true, window_days: 7, min_reads: 3, cold_days: 30}\n")
    assert retier(dest, "--policy", promote, "--apply") == 0
    assert rows(dest)["l0.png"].pixel is not None
    (src / "l0.png").write_bytes(b"changed")
    (src / "l1.png").write_bytes((src / "l1.png").read_bytes() + b"\0")
    (src / "l2.png").unlink()
    old = rows(dest)
    old_fp = old["l0.png"].model_fingerprint
    before = read_all(dest)
    shards = old_shards(dest)
    capsys.readouterr()
    policy = reencode_policy(tmp_path, str(src), min_psnr="20")
    assert retier(dest, "--policy", policy, "-v") == 0
    assert "reencode" in capsys.readouterr().out
    assert rows(dest) == old  # the plan alone changes nothing
    assert retier(dest, "--policy", policy, "--apply") == 0
    out = capsys.readouterr().out
    now = check_reencoded(dest, before, old_fp)
    copies = {i: now[i].reencoded["copy"] for i in LATENT_IDS}
    assert copies == {"crop1.png": "source", "l0.png": "pixel", "l1.png": "latent", "l2.png": "latent"}
    for image_id in LATENT_IDS:
        assert now[image_id].reencoded["psnr_before"] == old[image_id].psnr
    assert now["l0.png"].pixel is None and Archive.open(dest).bytes_on_store()["pixels"] == 0  # swept
    assert "re-encoded PSNR mean" in out and "1 from pixel" in out and "2 from latent" in out
    assert f"latent shards: {len(shards)}, {sum(n for _, n in shards):,} bytes" in out
    check_swept(dest, shards, capsys)
    summary = Archive.open(dest)
    from lbdask.archive.history import read_retier_runs

    fid = read_retier_runs(summary)[-1]["reencoded"]
    assert fid["objects"] == 4 and fid["copies"] == {"source": 1, "pixel": 1, "latent": 2}
    assert fid["psnr_before"]["psnr_mean"] == pytest.approx(sum(old[i].psnr for i in LATENT_IDS) / 4)
    assert fid["psnr_change_mean"] == pytest.approx(sum(now[i].psnr - old[i].psnr for i in LATENT_IDS) / 4)
    assert cli.main(["verify", dest, "--weights", str(TAEF2_WEIGHTS), "--sample", "0"]) == 0
    # against the original sources: rows re-encoded from a copy are checked by decode hash, not by PSNR
    from lbdask.models import load_model
    from lbdask.models.row_models import RowModels
    from lbdask.storage import open_location
    from lbdask.verify import verify_archive

    archive = Archive.open(dest)
    taef2 = load_model("taef2", weights=TAEF2_WEIGHTS, device="cpu")
    report = verify_archive(archive, taef2, [now[i] for i in LATENT_IDS], open_location(str(root / "src" / "lat")),
                            models=RowModels(archive, lambda: taef2, device="cpu"))
    assert report.failures == [] and report.latent_checked == 4
    capsys.readouterr()
    assert cli.main(["report", dest]) == 0
    assert "reencode 4 (re-encoded PSNR mean" in capsys.readouterr().out
    # a second apply has nothing left to do
    assert retier(dest, "--policy", policy, "--apply") == 0
    assert rows(dest) == now


def test_reencode_on_s3_from_the_old_latents(retier_archive, s3_bucket, model_y, tmp_path, capsys):
    import s3fs

    root, dest_dir = retier_archive
    fs = s3fs.S3FileSystem()
    dest = f"{s3_bucket}/arc"
    fs.put(dest_dir + "/", dest[5:], recursive=True)
    fs.invalidate_cache()
    before = read_all(dest)
    shards = old_shards(dest)
    old_fp = rows(dest)["l0.png"].model_fingerprint
    assert retier(dest, "--policy", reencode_policy(tmp_path, min_psnr="20"), "--apply") == 0
    now = check_reencoded(dest, before, old_fp)
    assert {now[i].reencoded["copy"] for i in LATENT_IDS} == {"latent"}
    check_swept(dest, shards, capsys)
    # promoting a re-encoded row stores its decode with model Y (what `lbdask read` gives)
    reads = read_all(dest)
    record_reads(dest, {"l0.png": (5, time.time())})
    promote = write_policy(tmp_path / "promote.yaml", "demote: {enabled: false}\n"
                                                      "promote: {enabled: true, window_days: 7, min_reads: 3, cold_days: 30}\n")
    assert retier(dest, "--policy", promote, "--apply") == 0
    row = rows(dest)["l0.png"]
    assert row.pixel is not None and Archive.open(dest).read_pixels(row) == reads["l0.png"]


def test_a_partial_reencode_keeps_the_shard_still_referenced_then_the_rest_frees_it(arc, model_y, tmp_path, capsys):
    """A floor between the new latents' PSNRs (34.5 dB for l1, 36-36.4 dB for the others, from
    their old latents) re-encodes only part of X's shard: it stays, its released latents pinned."""
    from lbdask.archive.history import read_retier_runs

    root, dest = arc
    old, shards, before = rows(dest), old_shards(dest), read_all(dest)
    assert retier(dest, "--policy", reencode_policy(tmp_path, min_psnr="35.2"), "--apply") == 0
    now = rows(dest)
    moved = [i for i in LATENT_IDS if now[i].reencoded]
    assert moved and len(moved) < len(LATENT_IDS)  # the gate kept the others on X
    assert old_shards(dest) == shards
    swept = read_retier_runs(Archive.open(dest))[-1]["swept"]
    assert swept["latent_shards"] == 0 and swept["pinned_shards"] == 1
    assert swept["pinned_bytes"] == sum(old[i].stored_bytes for i in moved)
    assert "stay pinned in 1 shard(s)" in capsys.readouterr().out
    assert set(read_all(dest)) == set(before)
    # the rest moves: the shard goes
    assert retier(dest, "--policy", reencode_policy(tmp_path, min_psnr="20"), "--apply") == 0
    check_reencoded(dest, before, old["l0.png"].model_fingerprint)
    check_swept(dest, shards, capsys)


def test_serving_reads_reencoded_rows_and_an_unloadable_model_is_a_one_line_error(arc, model_y, tmp_path,
                                                                                  monkeypatch, capsys):
    import asyncio
    import contextlib

    from lbdask.models import load_model
    from lbdask.serve.settings import ServeSettings
    from lbdask.serve.worker import ServingWorker

    root, dest = arc
    assert retier(dest, "--policy", reencode_policy(tmp_path, min_psnr="20"), "--apply") == 0
    taef2 = load_model("taef2", weights=TAEF2_WEIGHTS, device="cpu")
    rt = ServingWorker(ServeSettings(), lambda: contextlib.nullcontext(taef2))  # the archive's model is resident
    reads = read_all(dest)
    try:
        for image_id in ("l0.png", "crop1.png", "k0.png"):  # re-encoded rows decode with model Y
            assert asyncio.run(rt.read(dest, image_id)) == reads[image_id], image_id
        assert rt.stats()["decodes"] == 2
    finally:
        rt.close()
    monkeypatch.delenv("LBDASK_CONFIG_DIR")  # the registry no longer names taef2-y
    capsys.readouterr()
    assert cli.main(["read", dest, "l0.png", "--weights", str(TAEF2_WEIGHTS), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lbdask: error: model taef2-y (") and "cannot be loaded" in err and "\n" not in err


def test_policy_needs_from_and_to(tmp_path):
    from lbdask.errors import ConfigError
    from lbdask.tiering.policy import load_policy

    with pytest.raises(ConfigError, match="reencode needs `from`"):
        load_policy(write_policy(tmp_path / "p.yaml", "reencode: {enabled: true, to: taef2-y}\n"))
    assert load_policy(write_policy(tmp_path / "q.yaml", "reencode: {enabled: true, from: abc, to: y}\n")).reencode.from_ == "abc"


def test_a_long_lived_worker_loads_model_y_by_the_drivers_configs_not_an_earlier_jobs(tmp_path, monkeypatch):
    from lbdask import config
    from lbdask.models.resident import model_configs
    from lbdask.retier import reencode

    monkeypatch.setattr(config, "_adopted", {})
    monkeypatch.setattr(reencode, "_MODELS", {})
    earlier = model_configs()  # the shipped registry: no taef2-y
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(write_model_y_configs(tmp_path / "configs")))
    spec = reencode.ReencodeSpec("0" * 64, "taef2-y", None, None, None, 20.0, model_configs())
    config.adopt(earlier)  # what the resident-model plugin of an earlier tier-moves job left on the worker
    assert reencode.target_model(spec, None, None).name == "taef2-y"
