"""`lbdask retier`: the plan changes nothing; each move, applied, leaves every object readable."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest

import lbdask
from lbdask import cli
from lbdask.archive import Archive
from lbdask.image import pngio, pngsamples
from lbdask.image.quality import psnr
from tests.support.cluster import TAEF2_WEIGHTS
from tests.support.retier import DAY, read_all, record_reads, retier, store_digest, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("jobs_cluster")]  # jobs on a cluster in this process

#: Every test plans as of 100 days after the archive was made: unread objects are 100 days cold.
LATER = 100


@pytest.fixture
def base(retier_archive):
    return retier_archive


@pytest.fixture
def arc(base, tmp_path):
    root, dest = base
    copy = tmp_path / "arc"
    shutil.copytree(dest, copy)
    return str(copy)


def when(days: float) -> str:
    return dt.datetime.fromtimestamp(dt.datetime.now(dt.timezone.utc).timestamp() + days * DAY,
                                     dt.timezone.utc).isoformat(timespec="seconds")


def epoch(days: float) -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp() + days * DAY


def rows(dest):
    return {r.id: r for r in Archive.open(dest).rows()}


POLICY = """
demote: {enabled: true, cold_days: 90, min_psnr: 20}
promote: {enabled: true, window_days: 7, min_reads: 3, cold_days: 30}
convert: {enabled: false}
"""


def test_plan_without_apply_changes_nothing_and_lists_the_moves(arc, tmp_path, capsys):
    record_reads(arc, {"l0.png": (5, epoch(LATER - 1)), "k0.png": (1, epoch(LATER - 2))})
    before = store_digest(arc)
    policy = write_policy(tmp_path / "p.yaml", POLICY)
    out = tmp_path / "plan.json"
    assert retier(arc, "--policy", policy, "--now", when(LATER), "--plan-out", str(out), "-v") == 0
    text = capsys.readouterr().out
    plan = json.loads(out.read_text())["moves"]
    assert plan["demote"]["ids"] == ["crop0.png", "k1.png", "k2.png"]  # k0 was read 2 days ago
    assert plan["promote"]["ids"] == ["l0.png"]
    assert plan["demote"]["bytes"] == sum(rows(arc)[i].stored_bytes for i in plan["demote"]["ids"])
    assert "    k1.png" in text and "demote" in text
    assert store_digest(arc) == before


def test_demote_and_promote_then_unpromote_on_a_folder(arc, tmp_path, capsys):
    before = read_all(arc)
    record_reads(arc, {"l0.png": (5, epoch(LATER - 1)), "crop1.png": (4, epoch(LATER))})
    policy = write_policy(tmp_path / "p.yaml", POLICY)
    assert retier(arc, "--policy", policy, "--now", when(LATER), "--apply") == 0
    out = capsys.readouterr().out
    assert "demote" in out and "swept" in out
    now = rows(arc)
    demoted = [i for i in ("k0.png", "k1.png", "k2.png", "crop0.png") if now[i].status == "latent"]
    assert demoted and all(now[i].psnr >= 20 and now[i].original is None for i in demoted)
    refused = [i for i in ("k0.png", "k1.png", "k2.png", "crop0.png") if now[i].status == "kept"]
    assert all(now[i].demote_floor == 20 for i in refused)
    assert now["l0.png"].pixel is not None and now["crop1.png"].pixel is not None
    after = read_all(arc)
    for image_id, png in before.items():
        if image_id in demoted:
            a, b = pngio.decode(png, 10**8)[0], pngio.decode(after[image_id], 10**8)[0]
            assert psnr(a, b) >= 20
        else:
            assert np.array_equal(pngsamples.samples(after[image_id]), pngsamples.samples(png)), image_id
    arc_ = Archive.open(arc)
    assert arc_.read_pixels(now["l0.png"]) == after["l0.png"]
    # the run's summary is in the report, and the pixel tier in its stored bytes
    assert cli.main(["report", arc, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["retier"]["runs"] == 1 and rep["retier"]["last"]["moved"]["demote"] == len(demoted)
    assert rep["retier"]["last"]["moved"]["promote"] == 2
    assert rep["representations"]["pixels"]["bytes_stored"] == arc_.bytes_on_store()["pixels"] > 0
    assert sum(p["bytes_stored"] for p in rep["representations"].values()) == rep["bytes_stored"]
    assert cli.main(["report", arc]) == 0
    assert "retier          1 run(s)" in capsys.readouterr().out
    # reads of a promoted object come from the pixel tier: with its latent shard gone, the read still works
    shard = [p for p in (tmp_path / "arc" / "latents" / now["l0.png"].bucket / "c").rglob("*") if p.is_file()]
    saved = {p: p.read_bytes() for p in shard}
    for p in shard:
        p.write_bytes(b"")
    assert lbdask.open(arc).read("l0.png") == after["l0.png"]  # no weights needed either
    for p, data in saved.items():
        p.write_bytes(data)
    # `lbdask verify --all` checks the pixel copies too: a truncated one is a problem
    pixels = tmp_path / "arc" / now["l0.png"].pixel.key
    intact = pixels.read_bytes()
    pixels.write_bytes(intact[:-10])
    assert cli.main(["verify", arc, "--all", "--weights", str(TAEF2_WEIGHTS)]) == 2
    assert "pixel copy of 'l0.png'" in capsys.readouterr().out
    pixels.write_bytes(intact)
    assert cli.main(["verify", arc, "--all", "--weights", str(TAEF2_WEIGHTS)]) == 0
    capsys.readouterr()
    # a second run has nothing left to do
    assert retier(arc, "--policy", policy, "--now", when(LATER), "--plan-out", str(tmp_path / "again.json")) == 0
    again = json.loads((tmp_path / "again.json").read_text())["moves"]
    assert again["demote"]["count"] == again["promote"]["count"] == 0
    # 40 days without reads: the pixel copies go, and their object with them
    pixels_before = arc_.bytes_on_store()["pixels"]
    assert pixels_before > 0
    assert retier(arc, "--policy", policy, "--now", when(LATER + 40), "--apply") == 0
    now = rows(arc)
    assert now["l0.png"].pixel is None and now["crop1.png"].pixel is None
    assert Archive.open(arc).bytes_on_store()["pixels"] == 0
    assert read_all(arc) == after


def test_every_move_in_one_run_on_s3_with_sources_on_s3(base, s3_bucket, tmp_path, capsys):
    import s3fs

    root, dest_dir = base
    fs = s3fs.S3FileSystem()
    dest, src, quarantine = f"{s3_bucket}/arc", f"{s3_bucket}/src", f"{s3_bucket}/quarantine"
    fs.put(dest_dir + "/", dest[5:], recursive=True)
    fs.put(str(root / "src" / "lat") + "/", src[5:], recursive=True)
    fs.invalidate_cache()
    before = read_all(dest)
    record_reads(dest, {"k0.png": (1, epoch(LATER - 5)), "crop0.png": (1, epoch(LATER - 5)),
                        "l0.png": (9, epoch(LATER))})
    policy = write_policy(tmp_path / "p.yaml", POLICY.replace("convert: {enabled: false}", "convert: {enabled: true}") + f"""
source_cleanup: {{enabled: true, source: "{src}", quarantine: "{quarantine}", cold_days: 90, retention_days: 30,
                  delete_after_retention: true}}
""")
    assert retier(dest, "--policy", policy, "--now", when(LATER), "--apply") == 0
    summary = capsys.readouterr().out
    now = rows(dest)
    assert {now["k0.png"].kept_format, now["crop0.png"].kept_format} == {"jxl"}, summary
    assert any(now[i].status == "latent" for i in ("k1.png", "k2.png")), summary
    assert now["l0.png"].pixel is not None
    day = dt.datetime.fromtimestamp(epoch(LATER), dt.timezone.utc).strftime("%Y%m%d")
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(src[5:])) == ["l0.png"]  # read lately: stays
    moved = sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"{quarantine[5:]}/{day}"))
    assert moved == ["crop1.png", "l1.png", "l2.png"]
    for name in moved:
        assert fs.cat_file(f"{quarantine[5:]}/{day}/{name}") == (root / "src" / "lat" / name).read_bytes()
    after = read_all(dest)
    for image_id, png in before.items():
        if now[image_id].status == "latent" and not image_id.startswith(("l", "crop1")):
            assert psnr(pngio.decode(png, 10**8)[0], pngio.decode(after[image_id], 10**8)[0]) >= 20
        else:
            assert np.array_equal(pngsamples.samples(after[image_id]), pngsamples.samples(png)), image_id
    # 40 days later: the pixel copy is dropped (its object swept) and the quarantined sources deleted
    assert retier(dest, "--policy", policy, "--now", when(LATER + 40), "--apply") == 0
    later = rows(dest)
    assert later["l0.png"].pixel is None
    assert Archive.open(dest).bytes_on_store()["pixels"] == 0
    fs.invalidate_cache()
    assert not fs.exists(f"{quarantine[5:]}/{day}") or fs.find(f"{quarantine[5:]}/{day}") == []
    assert read_all(dest) == after


def test_source_cleanup_quarantines_then_deletes_only_when_the_policy_allows(base, arc, tmp_path, capsys):
    root, _ = base
    src, quarantine = tmp_path / "src", tmp_path / "quarantine"
    shutil.copytree(root / "src" / "lat", src)
    (src / "l1.png").write_bytes(b"changed since migration")
    policy_text = POLICY.replace("enabled: true", "enabled: false") + f"""
source_cleanup: {{enabled: true, source: "{src}", quarantine: "{quarantine}", cold_days: 90, retention_days: 30}}
"""
    policy = write_policy(tmp_path / "p.yaml", policy_text)
    before = read_all(arc)
    assert retier(arc, "--policy", policy, "--now", when(LATER), "--apply") == 0
    assert "quarantine" in capsys.readouterr().out
    assert sorted(p.name for p in src.iterdir()) == ["l1.png"]  # it changed: not the migrated file
    day = dt.datetime.fromtimestamp(epoch(LATER), dt.timezone.utc).strftime("%Y%m%d")
    assert sorted(p.name for p in (quarantine / day).iterdir()) == ["crop1.png", "l0.png", "l2.png"]
    assert (quarantine / day / "l0.png").read_bytes() == (root / "src" / "lat" / "l0.png").read_bytes()
    assert read_all(arc) == before
    # past retention, deleting not allowed: the plan says so and nothing goes
    out = tmp_path / "plan.json"
    assert retier(arc, "--policy", policy, "--now", when(LATER + 40), "--apply", "--plan-out", str(out)) == 0
    plan = json.loads(out.read_text())
    assert plan["moves"]["purge"]["count"] == 0 and sum(plan["notes"].values()) == 3
    assert len(list((quarantine / day).iterdir())) == 3
    allowed = write_policy(tmp_path / "p2.yaml", policy_text.replace("retention_days: 30", "retention_days: 30, "
                                                                                          "delete_after_retention: true"))
    assert retier(arc, "--policy", allowed, "--now", when(LATER + 20), "--apply") == 0
    assert len(list((quarantine / day).iterdir())) == 3  # 20 days: still within retention
    assert retier(arc, "--policy", allowed, "--now", when(LATER + 40), "--apply") == 0
    assert not (quarantine / day).exists() or not list((quarantine / day).iterdir())
    assert read_all(arc) == before
