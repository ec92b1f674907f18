"""The consistent-hash ring and the spillover rule shared by serving and the cluster simulator."""
from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbdask.routing.ring import HashRing, choose_decoder, stable_hash

KEYS = [f"img/{i:05d}.png" for i in range(20000)]
names = st.lists(st.text("abcdefghij:/.0123456789", min_size=1, max_size=12), min_size=1, max_size=12, unique=True)


def test_stable_hash_is_the_same_in_another_process():
    # Python's hash() is salted per process; routing must not be.
    out = subprocess.run(
        [sys.executable, "-c", "from lbdask.routing.ring import stable_hash; print(stable_hash('a/b.png'))"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert int(out) == stable_hash("a/b.png")


@pytest.mark.parametrize("n", [4, 16, 64, 256])
def test_keys_spread_evenly_over_members(n):
    ring = HashRing([f"tcp://10.0.0.{i}:8786" for i in range(n)])
    counts = Counter(ring.owner(k) for k in KEYS)
    assert len(counts) == n
    assert max(counts.values()) <= 1.6 * len(KEYS) / n


def test_removing_a_member_moves_only_its_keys_to_its_successor():
    members = [f"w{i}" for i in range(8)]
    ring = HashRing(members)
    smaller = HashRing([m for m in members if m != "w3"])
    for key in KEYS[:5000]:
        before = ring.owner(key)
        if before == "w3":
            assert smaller.owner(key) == ring.preference(key, 2)[1]
        else:
            assert smaller.owner(key) == before


def test_adding_a_member_takes_about_one_share():
    ring = HashRing([f"w{i}" for i in range(9)])
    bigger = HashRing([f"w{i}" for i in range(10)])
    moved = sum(ring.owner(k) != bigger.owner(k) for k in KEYS)
    assert 0.05 * len(KEYS) < moved < 0.16 * len(KEYS)
    assert all(bigger.owner(k) == "w9" for k in KEYS if ring.owner(k) != bigger.owner(k))


@settings(max_examples=60, deadline=None)
@given(names, st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30))
def test_order_of_members_does_not_matter_and_preference_starts_at_owner(members, keys):
    a, b = HashRing(members), HashRing(list(reversed(members)))
    assert a == b
    for key in keys:
        assert a.owner(key) == b.owner(key)
        pref = a.preference(key)
        assert pref[0] == a.owner(key)
        assert sorted(pref, key=str) == sorted(members, key=str)


def test_empty_ring_and_bad_vnodes():
    with pytest.raises(LookupError):
        HashRing([]).owner("x")
    with pytest.raises(ValueError):
        HashRing(["a"], vnodes=0)


def test_choose_decoder_keeps_owner_until_theta_then_least_loaded():
    depths = {"a": 4, "b": 1, "c": 0, "d": 0}
    assert choose_decoder("a", depths, theta=4) == "a"  # at theta: no spillover
    assert choose_decoder("a", {**depths, "a": 5}, theta=4) == "c"  # least loaded, name order on ties
    assert choose_decoder("a", {**depths, "a": 5}, theta=math.inf) == "a"
    assert choose_decoder("a", {"a": 5, "b": 5}, theta=1) == "a"  # nobody is less loaded
    assert choose_decoder("a", {}, theta=0) == "a"


def test_live_owner_is_the_owner_once_the_dead_are_dropped():
    from lbdask.routing.ring import live_owner

    members = [f"tcp://10.0.0.{i}:8786" for i in range(6)]
    ring = HashRing(members)
    dead = {members[1], members[4]}
    smaller = HashRing([m for m in members if m not in dead])
    for key in KEYS[:3000]:
        assert live_owner(ring, key, dead) == smaller.owner(key)
        assert live_owner(ring, key) == ring.owner(key)
    with pytest.raises(LookupError):
        live_owner(ring, "k", members)
