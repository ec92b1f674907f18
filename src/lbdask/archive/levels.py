"""Which runs a compaction merges next (levelled runs, docs/archive-format.md "Sorted runs").

A fold adds one level-0 run at the front of the manifest's newest-first list. Level-0 runs
pile up to `l0_runs`; then they and the level-1 run merge into a new level-1 run. Level
i >= 1 holds one run of at most `base_rows * fanout**i` rows; a larger one merges with the
level-(i+1) run into a new level-(i+1) run. Only neighbours in the list are merged together,
so a merged run replaces them in place and the newer of two rows of an id still wins.
"""
from __future__ import annotations

from collections.abc import Sequence

from lbdask.archive.runs import RunInfo


def plan_merge(runs: Sequence[RunInfo], l0_runs: int = 4, fanout: int = 8,
               base_rows: int = 20_000) -> list[RunInfo] | None:
    """The contiguous runs (a slice of the newest-first `runs`) to merge next, or None when
    no merge is due. The merged run's level is `merged_level(group)`."""
    zeros = 0
    while zeros < len(runs) and runs[zeros].level == 0:
        zeros += 1
    if zeros > l0_runs:
        return list(runs[: zeros + 1 if zeros < len(runs) and runs[zeros].level == 1 else zeros])
    for n in range(zeros, len(runs)):
        run = runs[n]
        if run.rows > base_rows * fanout ** run.level:
            below = runs[n + 1: n + 2]
            return [run, *(r for r in below if r.level == run.level + 1)]
    return None


def merged_level(group: Sequence[RunInfo]) -> int:
    """Level of the run that replaces a group `plan_merge` chose: one below its newest run's."""
    return group[0].level + 1
