"""The commands that read a whole catalog stream it: their memory does not grow with the number
of rows (issue 25: <= 500 MB at 10 M rows). Measured with tracemalloc on catalogs of 500 and 3k
rows: between the two, a command may grow by what a plain pass over `Archive.rows()` grows (the
catalog's own bounded caches) and by little more - far less than holding the extra rows costs."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator

import pytest

from lbdask.archive import Archive
from lbdask.archive.summary import summarize
from lbdask.cli import main
from lbdask.cli.stats import gather
from lbdask.migrate.job import pending_work
from lbdask.representation.listing import ListedSource
from lbdask.representation.settings import JobSettings
from lbdask.retier.prepare import plan_run
from lbdask.serve.prewarm import hottest_ids
from lbdask.tiering.policy import RetierPolicy
from lbdask.verify import sample_rows
from tests.support.catalog import peak_bytes, synthetic_archive, synthetic_row

SIZES = (500, 3_000)


#: dest -> the source listing (ascending) of exactly the ids its catalog holds (a rerun with nothing to do)
LISTINGS: dict[str, list[ListedSource]] = {}


def rerun_check(dest: str) -> None:
    """What `lbdask migrate` checks before it starts a cluster, on a complete archive."""
    assert not pending_work(Archive.open(dest), LISTINGS[dest], False, print).has_work


def quiet_cli(*argv: str) -> None:
    """`lbdask ARGV` with its output thrown away (a captured output would grow with the rows)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        assert main(list(argv)) == 0


COMMANDS = {
    "ls": lambda dest: quiet_cli("ls", dest),
    "report": lambda dest: summarize(Archive.open(dest)),
    "stats": lambda dest: gather(dest, {}, 10, time.time(), 7.0),
    "verify --sample": lambda dest: sample_rows(Archive.open(dest).rows(), 50, seed=1),
    "retier (plan)": lambda dest: plan_run(dest, RetierPolicy(), JobSettings(), {}, time.time(), None),
    "serve --prewarm N": lambda dest: hottest_ids(dest, 10),
    "migrate (rerun check)": rerun_check,
}


@pytest.fixture(scope="module")
def catalogs() -> Iterator[dict[int, str]]:
    """The two catalogs, in memory where the machine has /dev/shm (their fsyncs are not what is measured)."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as root:
        found = {n: synthetic_archive(f"{root}/arc{n}", n).url for n in SIZES}
        for n, dest in found.items():
            LISTINGS[dest] = sorted((ListedSource(r.id, r.source_size) for r in map(synthetic_row, range(n))),
                                    key=lambda e: e.id)
        yield found


def growth(catalogs: dict[int, str], run) -> int:
    """How much more `run(dest)` allocates at its peak on the larger catalog than on the smaller."""
    small, large = (peak_bytes(lambda n=n: run(catalogs[n])) for n in SIZES)
    return large - small


@pytest.fixture(scope="module")
def scale(catalogs) -> tuple[int, int]:
    """The growth of holding every row, and of one plain pass over them (the baseline)."""
    return (growth(catalogs, lambda dest: list(Archive.open(dest).rows())),
            growth(catalogs, lambda dest: deque(Archive.open(dest).rows(), maxlen=0)))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_reading_the_whole_catalog_holds_no_row_per_id(catalogs, scale, command):
    holding, passing = scale
    run = COMMANDS[command]
    run(catalogs[SIZES[0]])  # imports and first-use caches are not the command's rows
    more = growth(catalogs, run)
    assert holding > 4 * 2**20  # the 2.5k more rows cost over 4 MB when held
    assert more - passing < holding / 32, (more, passing, holding)
