"""The levels policy (`lbdask.archive.levels.plan_merge`): which contiguous runs merge next.

A stateful model folds random batches of ids into level-0 runs and applies every merge the
plan asks for, to quiescence, with dicts standing in for runs (newest first, like a
manifest): merged groups are contiguous, lookups through the runs newest first equal a
dict of the newest values, the number of runs stays logarithmic and the rows written stay
within the bound that levelled merging promises (docs/archive-format.md)."""
import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lbdask.archive.levels import merged_level, plan_merge
from lbdask.archive.runs import RunInfo


def run(name, level, rows):
    return RunInfo(f"catalog/runs/{name}.run", level, rows, 1, 0, 1, "a", "z")


def test_level_zero_runs_merge_with_the_level_one_run_once_there_are_more_than_l0_runs():
    zeros = [run(f"z{i}", 0, 10) for i in range(4)]
    rest = [run("one", 1, 10), run("two", 2, 10)]
    assert plan_merge(zeros + rest, l0_runs=4) is None
    five = [run("new", 0, 1), *zeros]
    assert plan_merge(five + rest, l0_runs=4) == five + rest[:1]
    assert plan_merge(five + rest[1:], l0_runs=4) == five  # no level-1 run: the level-0 runs alone
    assert merged_level(five) == merged_level(five + rest[:1]) == 1


def test_an_oversized_level_merges_with_the_next_level_only():
    small, big = run("one", 1, 160), run("one", 1, 161)  # limit of level 1: 20 * 8**1
    two, three = run("two", 2, 5), run("three", 3, 5)
    assert plan_merge([small, two, three], l0_runs=4, fanout=8, base_rows=20) is None
    assert plan_merge([big, two, three], l0_runs=4, fanout=8, base_rows=20) == [big, two]
    assert plan_merge([big, three], l0_runs=4, fanout=8, base_rows=20) == [big]  # moves down alone
    assert merged_level([big, two]) == merged_level([big]) == 2
    huge_two = run("two", 2, 20 * 64 + 1)
    assert plan_merge([small, huge_two, three], fanout=8, base_rows=20) == [huge_two, three]
    assert plan_merge([run("z", 0, 10**6)], l0_runs=0) == [run("z", 0, 10**6)]
    assert plan_merge([]) is None


def test_the_default_policy_is_four_level_zero_runs_fanout_eight_and_twenty_thousand_rows():
    zeros = [run(f"z{i}", 0, 1) for i in range(5)]
    assert plan_merge(zeros[:4]) is None
    assert plan_merge(zeros) == zeros
    for level, limit in ((1, 160_000), (2, 1_280_000)):
        assert plan_merge([run("r", level, limit)]) is None
        assert plan_merge([run("r", level, limit + 1)]) == [run("r", level, limit + 1)]


class Levels(RuleBasedStateMachine):
    """Runs as (RunInfo, {id: version}) pairs, newest first."""

    @initialize(l0_runs=st.integers(1, 4), fanout=st.integers(2, 5), base_rows=st.integers(1, 20))
    def start(self, l0_runs, fanout, base_rows):
        self.policy = {"l0_runs": l0_runs, "fanout": fanout, "base_rows": base_rows}
        self.runs = []
        self.newest = {}
        self.folds = self.folded = self.merge_written = self.l0_merges = self.max_level = 0

    @rule(ids=st.sets(st.integers(0, 2_000), min_size=1, max_size=200))
    def fold(self, ids):
        self.folds += 1
        rows = {i: self.folds for i in ids}
        self.newest.update(rows)
        self.folded += len(rows)
        self.runs.insert(0, (run(f"f{self.folds}", 0, len(rows)), rows))
        self.merge_to_quiescence()

    def merge_to_quiescence(self):
        while (group := plan_merge([info for info, _ in self.runs], **self.policy)) is not None:
            keys = [info.key for info, _ in self.runs]
            start = keys.index(group[0].key)
            assert keys[start: start + len(group)] == [info.key for info in group]  # contiguous
            merged = {}
            for _, rows in reversed(self.runs[start: start + len(group)]):  # oldest first: newer wins
                merged.update(rows)
            level = merged_level(group)
            assert level > group[0].level and level >= group[-1].level
            self.l0_merges += group[0].level == 0
            self.merge_written += len(merged)
            self.max_level = max(self.max_level, level)
            info = run(f"m{self.folds}-{start}-{len(merged)}", level, len(merged))
            self.runs[start: start + len(group)] = [(info, merged)]

    @invariant()
    def newest_wins(self):
        for i, version in self.newest.items():
            assert next(rows[i] for _, rows in self.runs if i in rows) == version

    @invariant()
    def levels_ascend_and_runs_are_few(self):
        levels = [info.level for info, _ in self.runs]
        assert levels == sorted(levels)
        assert all(levels.count(level) == 1 for level in levels if level > 0)
        n, base, fanout = len(self.newest), self.policy["base_rows"], self.policy["fanout"]
        deeper = max(0, math.ceil(math.log(n / base, fanout))) if n else 0
        assert len(self.runs) <= self.policy["l0_runs"] + deeper + 1

    @invariant()
    def rows_are_rewritten_once_per_level(self):
        """Merging level i >= 1 down writes < (1 + fanout) rows per row it moves (the level
        below holds at most fanout times as many), each folded row moves down each level
        at most once; a level-0 merge writes its folds' rows plus at most the level-1 limit."""
        fanout, base = self.policy["fanout"], self.policy["base_rows"]
        deeper = (1 + fanout) * max(0, self.max_level - 1)
        assert self.merge_written <= self.folded * (1 + deeper) + self.l0_merges * base * fanout


TestLevels = Levels.TestCase
TestLevels.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
