"""The re-tiering policy is validated at load time; the planner picks exactly the moves it asks for."""
from __future__ import annotations

import pytest

from lbdask import cli
from lbdask.archive.rows import CatalogRow, OriginalRef
from lbdask.errors import ConfigError
from lbdask.retier.plan import DAY, Usage, plan_moves
from lbdask.retier.policy import RetierPolicy, load_policy

NOW = 1_800_000_000.0
CREATED = NOW - 400 * DAY


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
    usage = {"k1": Usage(3, NOW - 10 * DAY), "l0": Usage(25, NOW - DAY), "l1": Usage(25, NOW - 8 * DAY),
             "l2": Usage(1, NOW - 31 * DAY), "l3": Usage(1, NOW - 29 * DAY)}
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
    from lbdask.retier.policy import ConvertPolicy, DemotePolicy, SourceCleanupPolicy

    clean = SourceCleanupPolicy(enabled=True, source="/s", quarantine="/q", cold_days=100, retention_days=30)
    policy = RetierPolicy(demote=DemotePolicy(enabled=False), convert=ConvertPolicy(enabled=True), source_cleanup=clean)
    rows = [kept(0), kept(1, kept_note="jxl not smaller"), latent(0), latent(1)]
    sources = {"k0": 100, "l0": 500, "l1": 499}  # l1's source changed size: not the migrated file
    held = [("20200101/a.png", NOW - 31 * DAY), ("20200102/b.png", NOW - 29 * DAY)]
    plan = plan_moves("d", rows, {"k0": Usage(1, NOW)}, policy, NOW, CREATED, 30.0, sources, held)
    assert plan.moves["convert"] == ["k0"]
    assert plan.moves["quarantine"] == ["l0"]  # k0 was just read
    assert plan.moves["purge"] == [] and sum(plan.notes.values()) == 1  # past retention, but deleting is off
    allowed = RetierPolicy(source_cleanup=SourceCleanupPolicy(**{**clean.__dict__, "delete_after_retention": True}))
    assert plan_moves("d", rows, {}, allowed, NOW, CREATED, 30.0, sources, held).moves["purge"] == ["20200101/a.png"]


def test_prewarm_picks_the_most_read_recent_objects():
    from lbdask.retier.policy import DemotePolicy, PrewarmPolicy, PromotePolicy

    policy = RetierPolicy(demote=DemotePolicy(enabled=False), promote=PromotePolicy(enabled=False),
                          prewarm=PrewarmPolicy(enabled=True, scheduler="tcp://x:1", window_days=1, top=2))
    rows = [latent(0), latent(1), latent(2), latent(3), kept(0)]
    usage = {"l0": Usage(5, NOW - 3600), "l1": Usage(50, NOW - 2 * DAY), "l2": Usage(9, NOW - 60),
             "l3": Usage(1, NOW), "k0": Usage(7, NOW), "gone": Usage(99, NOW)}
    plan = plan_moves("d", rows, usage, policy, NOW, CREATED, 30.0)
    assert sorted(plan.moves["prewarm"]) == ["k0", "l2"]  # l1 is older than the window, gone is not in the catalog
    assert plan.total == 2
    with pytest.raises(ValueError, match="prewarm needs `scheduler`"):
        RetierPolicy(prewarm=PrewarmPolicy(enabled=True)).validate()
