"""The archive's model table and the re-encode planning: fast, no model loaded."""
from __future__ import annotations

import pytest

from lbdask.access.days import Access
from lbdask.archive import Archive, CatalogRow
from lbdask.archive.model_table import (
    bucket_for,
    find_model,
    model_table,
    register_model,
    require_model,
    resolve_reference,
)
from lbdask.archive.rows import OriginalRef
from lbdask.errors import ConfigError, ModelMismatchError
from lbdask.tiering.plan import DAY, plan_moves
from lbdask.tiering.policy import RetierPolicy

X = {"name": "tiny", "fingerprint": "a" * 64, "latent_channels": 4, "downsample": 8, "config": {}}
Y = {"name": "tiny-y", "fingerprint": "b" * 64, "latent_channels": 8, "downsample": 16, "config": {"k": 1},
     "pad_multiple": 16}


def test_register_is_idempotent_and_keeps_the_archive_model_first(tmp_path):
    arc = Archive.create(str(tmp_path / "arc"), X)
    assert model_table(arc) == [X]
    entry = register_model(arc, Y, {"model": "tiny-y", "weights": "/w"})
    assert entry["load"] == {"model": "tiny-y", "weights": "/w"} and "pad_multiple" not in entry
    assert register_model(arc, Y, {"model": "elsewhere", "weights": None}) == entry  # kept as it was
    assert register_model(arc, X, {"model": "x", "weights": None}) == X  # the archive's own: nothing written
    reopened = Archive.open(str(tmp_path / "arc"))
    assert [e["name"] for e in model_table(reopened)] == ["tiny", "tiny-y"]
    assert find_model(reopened, "b" * 64) == entry and find_model(reopened, "c" * 64) is None
    with pytest.raises(ModelMismatchError, match=r"rows of model cccccccccccc, .*lacks \(it has tiny \(aaaaaaaaaaaa\), tiny-y"):
        require_model(reopened, "c" * 64)


def test_references_and_bucket_names(tmp_path):
    arc = Archive.create(str(tmp_path / "arc"), X)
    register_model(arc, Y, {"model": "tiny-y", "weights": None})
    assert resolve_reference(arc, "tiny")["fingerprint"] == "a" * 64
    assert resolve_reference(arc, "b" * 12)["name"] == "tiny-y"
    for bad in ("bbbb", "nope"):  # a short prefix is no reference
        with pytest.raises(ConfigError, match="no model of archive"):
            resolve_reference(arc, bad)
    assert bucket_for(arc, "a" * 64, 8, 4, 2, 2) == "b8-c4-2x2" == bucket_for(arc, None, 8, 4, 2, 2)
    assert bucket_for(arc, "b" * 64, 8, 4, 2, 2) == f"m{'b' * 16}-b8-c4-2x2"


def test_plan_reencodes_rows_of_the_old_model_and_does_not_promote_them():
    now = 1_800_000_000.0
    rows = [CatalogRow("x0", "latent", model_fingerprint="a" * 64, stored_bytes=5),
            CatalogRow("x1", "latent", model_fingerprint="a" * 64, stored_bytes=7,
                       pixel=OriginalRef("pixels/p.bin", 0, 3)),
            CatalogRow("y0", "latent", model_fingerprint="b" * 64, stored_bytes=9),
            CatalogRow("k0", "kept", "fidelity", stored_bytes=11)]
    usage = {i: Access.read_at(now - DAY, 50) for i in ("x0", "y0")}
    policy = RetierPolicy()
    plan = plan_moves("d", rows, usage, policy, now, now - 400 * DAY, 30.0, reencode_from="a" * 64)
    assert plan.moves["reencode"] == ["x0", "x1"] and plan.bytes["reencode"] == 12
    assert plan.moves["promote"] == ["y0"] and plan.moves["unpromote"] == []  # x0 hot, x1 cold: re-encoded instead
    assert plan_moves("d", rows, usage, policy, now, now - 400 * DAY, 30.0).moves["reencode"] == []
