"""Request coalescing: one leader per in-flight key, waiters handed back once."""
from __future__ import annotations

import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lbdask.routing.coalesce import Coalescer


class CoalescerModel(RuleBasedStateMachine):
    """Against a plain dict: each key is led by its first joiner until finished."""

    def __init__(self):
        super().__init__()
        self.c = Coalescer()
        self.model: dict[str, list[int]] = {}
        self.n = 0
        self.joined_behind = 0

    @rule(key=st.sampled_from("abc"))
    def join(self, key):
        self.n += 1
        leader = self.c.join(key, self.n)
        assert leader == (key not in self.model)
        if leader:
            self.model[key] = []
        else:
            self.model[key].append(self.n)
            self.joined_behind += 1

    @rule(key=st.sampled_from("abc"))
    def finish(self, key):
        assert self.c.finish(key) == self.model.pop(key, [])

    @invariant()
    def same_flights(self):
        assert len(self.c) == len(self.model)
        assert self.c.coalesced == self.joined_behind
        for key in "abc":
            assert self.c.in_flight(key) == (key in self.model)


TestCoalescer = CoalescerModel.TestCase
TestCoalescer.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


def test_threads_racing_on_one_key_elect_exactly_one_leader():
    c = Coalescer()
    leaders = []
    barrier = threading.Barrier(16)

    def go(i):
        barrier.wait()
        if c.join("k", i):
            leaders.append(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leaders) == 1
    waiters = c.finish("k")
    assert sorted(waiters + leaders) == list(range(16))
    assert c.coalesced == 15
    assert not c.in_flight("k")
