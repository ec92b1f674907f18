"""The re-tiering policy is validated at load time; the planner picks exactly the moves it asks for."""
from __future__ import annotations

import pytest

from lbdask import cli
from lbdask.access.days import Access, check_window
from lbdask.archive.rows import CatalogRow, OriginalRef
from lbdask.errors import ConfigError
from lbdask.tiering.plan import DAY, plan_moves
from lbdask.tiering.policy import PrewarmPolicy, PromotePolicy, RetierPolicy, load_policy

NOW = 1_800_000_000.0
CREATED = NOW - 400 * DAY


def reads(n, when):
    """`n` reads, all at `when`, as the access statistics hold them."""
    return Access.read_at(when, n)


def test_shipped_policy_loads():
    assert load_policy() == RetierPolicy()  # configs/retier.yaml spells out the defaults


@pytest.mark.parametrize("text, message", [
    ("demote: {cold_days: -1}", "demote.cold_days must be at least 0"),
    ("promote: {window_days: 10, cold_days: 5}", "promote.cold_days (5.0) must be at least promote.window_days"),
    ("convert: {effort: 12}", "convert.effort must be 1 ... 9"),
    ("source_cleanup: {enabled: true, source: /a}", "needs both `source`"),
    ("source_cleanup: {enabled: true, source: /a, quarantine: /a/q}", "must lie outside the source"),
    ("demote: {cold_dayz: 3}", "unknown key(s) cold_dayz"),
    ("batch_size: two", "expected int"),
])
def test_bad_policies_fail_at_load_with_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="p.yaml"):
        load_policy(str(path))
    assert cli.main(["retier", str(tmp_path / "nowhere"), "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lbdask: error: ") and message in err and err.count("\n") == 1


def kept(i, reason="fidelity", **kw):
    return CatalogRow(f"k{i}", "kept", reason, source_size=100 + i, stored_bytes=100 + i,
                      original=OriginalRef("originals/b.bin", 0, 100 + i), kept_format="png", **kw)


def latent(i, **kw):
    return CatalogRow(f"l{i}", "latent", bucket="b", index=i, source_size=500, stored_bytes=50, **kw)


def test_plan_picks_cold_kept_hot_latents_and_cold_pixel_copies():
    policy = RetierPolicy()  # demote after 90 days, promote at 20 reads within 7 days, drop after 30
    rows = [kept(0), kept(1), kept(2, "transparency"), kept(3, demote_floor=25.0), kept(4, demote_floor=35.0),
            latent(0), latent(1), latent(2, pixel=OriginalRef("pixels/x.bin", 0, 7)),
            latent(3, pixel=OriginalRef("pixels/x.bin", 7, 9))]
    usage = {"k1": reads(3, NOW - 10 * DAY), "l0": reads(25, NOW - DAY), "l1": reads(25, NOW - 8 * DAY),
             "l2": reads(1, NOW - 31 * DAY), "l3": reads(1, NOW - 29 * DAY)}
    plan = plan_moves("d", rows, usage, policy, NOW, CREATED, demote_floor=30.0)
    assert plan.moves["demote"] == ["k0", "k4"]  # k1 read lately, k2 structural, k3 refused at a lower floor
    assert plan.bytes["demote"] == 100 + 104
    assert plan.moves["promote"] == ["l0"]  # l1's reads are older than the window
    assert plan.moves["unpromote"] == ["l2"]
    assert plan.moves["convert"] == []  # off by default
    fresh = plan_moves("d", rows, {}, policy, NOW, NOW - DAY, demote_floor=30.0)
    assert fresh.moves["demote"] == []  # nothing read, but the archive is one day old
    unseen_warm = RetierPolicy(unseen_is_cold=False)
    assert plan_moves("d", rows, {}, unseen_warm, NOW, CREATED, demote_floor=30.0).moves["demote"] == []


def test_plan_converts_kept_pngs_once_and_cleans_sources_only_when_asked():
    from lbdask.tiering.policy import ConvertPolicy, DemotePolicy, SourceCleanupPolicy

    clean = SourceCleanupPolicy(enabled=True, source="/s", quarantine="/q", cold_days=100, retention_days=30)
    policy = RetierPolicy(demote=DemotePolicy(enabled=False), convert=ConvertPolicy(enabled=True), source_cleanup=clean)
    rows = [kept(0), kept(1, kept_note="jxl not smaller"), latent(0), latent(1)]
    sources = {"k0": 100, "l0": 500, "l1": 499}  # l1's source changed size: not the migrated file
    held = [("20200101/a.png", NOW - 31 * DAY), ("20200102/b.png", NOW - 29 * DAY)]
    plan = plan_moves("d", rows, {"k0": reads(1, NOW)}, policy, NOW, CREATED, 30.0, sources, held)
    assert plan.moves["convert"] == ["k0"]
    assert plan.moves["quarantine"] == ["l0"]  # k0 was just read
    assert plan.moves["purge"] == [] and sum(plan.notes.values()) == 1  # past retention, but deleting is off
    allowed = RetierPolicy(source_cleanup=SourceCleanupPolicy(**{**clean.__dict__, "delete_after_retention": True}))
    assert plan_moves("d", rows, {}, allowed, NOW, CREATED, 30.0, sources, held).moves["purge"] == ["20200101/a.png"]


def test_prewarm_picks_the_most_read_recent_objects():
    from lbdask.tiering.policy import DemotePolicy, PrewarmPolicy, PromotePolicy

    policy = RetierPolicy(demote=DemotePolicy(enabled=False), promote=PromotePolicy(enabled=False),
                          prewarm=PrewarmPolicy(enabled=True, scheduler="tcp://x:1", window_days=1, top=2))
    rows = [latent(0), latent(1), latent(2), latent(3), kept(0)]
    usage = {"l0": reads(5, NOW - 3600), "l1": reads(50, NOW - 2 * DAY), "l2": reads(9, NOW - 60),
             "l3": reads(1, NOW), "k0": reads(7, NOW), "gone": reads(99, NOW)}
    plan = plan_moves("d", rows, usage, policy, NOW, CREATED, 30.0)
    assert sorted(plan.moves["prewarm"]) == ["k0", "l2"]  # l1 is older than the window, gone is not in the catalog
    assert plan.total == 2
    with pytest.raises(ValueError, match="prewarm needs `scheduler`"):
        RetierPolicy(prewarm=PrewarmPolicy(enabled=True)).validate()


def test_promote_counts_reads_within_the_window_only(tmp_path):
    """Many reads long ago and a few lately is not hot (it was by the total and the last
    read); min_reads within window_days is, unless unpromote would count it cold."""
    import json

    from lbdask.tiering.policy import DemotePolicy, PromotePolicy

    policy = RetierPolicy(demote=DemotePolicy(enabled=False), promote=PromotePolicy(window_days=7, cold_days=7))
    rows = [latent(0), latent(1), latent(2)]
    usage = {"l0": reads(500, NOW - 20 * DAY).merge(reads(2, NOW - DAY)),     # 502 reads, 2 this week
             "l1": reads(5, NOW - 6 * DAY).merge(reads(15, NOW - 3600)),      # 20 this week
             "l2": reads(30, NOW - 7.2 * DAY)}  # on a day the window overlaps, but 7.2 days >= cold_days
    plan = plan_moves("d", rows, usage, policy, NOW, CREATED, 30.0)
    assert plan.moves["promote"] == ["l1"]
    out = tmp_path / "plan.json"
    out.write_text(json.dumps(plan.to_json()))
    assert json.loads(out.read_text())["moves"]["promote"] == {"count": 1, "bytes": 50, "ids": ["l1"],
                                                              "window_reads": {"l1": 20}}
    assert "l1  (20 reads in window)" in plan.render(verbose=True)
    lazy = RetierPolicy(demote=DemotePolicy(enabled=False), promote=PromotePolicy(window_days=7, cold_days=8))
    assert plan_moves("d", rows, usage, lazy, NOW, CREATED, 30.0).moves["promote"] == ["l1", "l2"]


def test_statistics_of_format_1_promote_only_what_was_read_lately(tmp_path):
    """tests/fixtures/access-format1: old.png has 41 reads, the last yesterday, but 40 of them
    in a format-1 generation (no day): only new.png's 25 reads count in the window."""
    import shutil
    from pathlib import Path

    from lbdask.access.log import load_access
    from lbdask.storage import open_location

    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "access-format1", tmp_path / "arc")
    usage = load_access(open_location(str(tmp_path / "arc")))
    rows = [CatalogRow(i, "latent", bucket="b", index=n, stored_bytes=9) for n, i in enumerate(usage)]
    now = usage["old.png"].last_access + DAY
    plan = plan_moves("d", rows, usage, RetierPolicy(), now, now - 400 * DAY, 30.0)
    assert plan.moves["promote"] == ["new.png"] and plan.window_reads == {"promote": {"new.png": 25}}


def test_a_window_longer_than_the_retention_is_refused(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("promote: {window_days: 40, cold_days: 60}")
    assert cli.main(["retier", str(tmp_path / "nowhere"), "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert "promote.window_days (40) is longer than worker.access_retention_days (31)" in err and err.count("\n") == 1
    RetierPolicy(promote=PromotePolicy(enabled=False, window_days=40, cold_days=60)).check_retention(31)
    for days in (0, 0.5, 31):  # today only, part of a day, the whole retention: all within it
        RetierPolicy(promote=PromotePolicy(window_days=days, cold_days=60)).check_retention(31)
    with pytest.raises(ConfigError, match=r"^promote.window_days must be at least 0, not -1$"):
        check_window("promote.window_days", -1, 31)
    with pytest.raises(ConfigError, match="prewarm.window_days"):
        RetierPolicy(promote=PromotePolicy(enabled=False),
                     prewarm=PrewarmPolicy(enabled=True, scheduler="tcp://x:1", window_days=2.5)).check_retention(2)
