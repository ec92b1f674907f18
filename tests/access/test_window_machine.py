"""Stateful test of the access statistics: totals, last access and per-window reads against a model."""
import math
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lbdask.access import log as access_log
from lbdask.access.days import DAY
from lbdask.access.log import AccessLog, compact_access, generations, load_access
from lbdask.storage import open_location
from tests.support.access import Crash, crashing_at

IDS = st.sampled_from([f"d{i % 3}/img{i}.png" for i in range(10)])


RETENTION = 1  # days of buckets the machine's generations keep: yesterday and today
WINDOWS = (0, 0.25, 1)


def reads_in_window(times, now, window_days):
    """The model: reads whose UTC day overlaps the `window_days` days before `now`."""
    first, last = math.floor((now - window_days * 86400) / 86400), math.floor(now / 86400)
    return sum(1 for t in times if first <= math.floor(t / 86400) <= last)


class AccessMachine(RuleBasedStateMachine):
    """Two writers, compactions (some crashed before any write, some overtaken) and a clock
    that moves by hours: totals, last access and every window's reads equal the model's."""

    @initialize()
    def start(self):
        self.root = tempfile.mkdtemp(prefix="access-model-")
        self.loc = open_location(self.root)
        self.logs = [AccessLog(self.loc, "w0"), AccessLog(self.loc, "w1")]
        self.model: dict[str, list[float]] = {}  # id -> times of its flushed reads
        self.pending: list[list[tuple[str, float]]] = [[], []]
        self.clock = 0.0

    def teardown(self):
        shutil.rmtree(getattr(self, "root", ""), ignore_errors=True)

    def compact_now(self):
        return compact_access(self.loc, retention_days=RETENTION)

    @rule(hours=st.integers(4, 40))
    def time_passes(self, hours):
        self.clock += hours * 3600.0

    @rule(who=st.integers(0, 1), ids=st.lists(IDS, min_size=1, max_size=4))
    def add(self, who, ids):
        for i in ids:
            self.clock += 1
            self.logs[who].add(i, self.clock)
            self.pending[who].append((i, self.clock))

    @rule(who=st.integers(0, 1))
    def flush(self, who):
        assert self.logs[who].flush() == len({i for i, _ in self.pending[who]})
        for i, t in self.pending[who]:
            self.model.setdefault(i, []).append(t)
        self.pending[who] = []

    @rule(who=st.integers(0, 1))
    def crash_during_flush(self, who):
        with pytest.MonkeyPatch.context() as mp:
            crashing_at(mp, 0)
            if self.pending[who]:
                with pytest.raises(Crash):
                    self.logs[who].flush()

    @rule()
    def compact(self):
        assert self.compact_now()["stepped_back"] == 0

    @rule(k=st.integers(0, 6))
    def crash_during_compaction(self, k):
        with pytest.MonkeyPatch.context() as mp:
            crashing_at(mp, k)
            try:
                self.compact_now()
            except Crash:
                pass

    @rule(who=st.integers(0, 1))
    def another_compactor_commits_first(self, who):
        """A compactor that read the generation is overtaken (after a flush) before it commits."""
        real = access_log.put_exclusive
        state = {"raced": False}

        def racing(loc, path, data):
            if not state["raced"]:
                state["raced"] = True
                self.flush(who)
                with pytest.MonkeyPatch.context() as inner:
                    inner.setattr(access_log, "put_exclusive", real)
                    self.compact_now()
            return real(loc, path, data)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(access_log, "put_exclusive", racing)
            assert self.compact_now()["stepped_back"] == 0

    @invariant()
    def counts_match_the_flushed_reads(self):
        stats = load_access(self.loc)
        assert {i: (a.count, a.last_access) for i, a in stats.items()} == {
            i: (len(ts), max(ts)) for i, ts in self.model.items()}
        for w in WINDOWS:
            assert {i: a.reads_within(self.clock, w) for i, a in stats.items()} == {
                i: reads_in_window(ts, self.clock, w) for i, ts in self.model.items()}, w

    @invariant()
    def generations_keep_the_retention_only(self):
        gens = generations(self.loc)
        counts = access_log._read_snapshot(self.loc, gens).counts if gens else {}
        newest = max((math.floor(a.last_access / DAY) for a in counts.values()), default=0)
        assert all(d >= newest - RETENTION for a in counts.values() for d, _ in a.days)
        assert all(sum(n for _, n in a.days) <= a.count for a in counts.values())


TestAccessMachine = AccessMachine.TestCase
TestAccessMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
