"""Access statistics: flushed counts (totals and per-day buckets) are never lost or counted twice,
whatever crashes or races; format-1 objects still load."""
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lbdask.access import log as access_log
from lbdask.access.days import DAY
from lbdask.access.log import Access, AccessLog, compact_access, generations, load_access, log_names
from lbdask.errors import InputError, IntegrityError
from lbdask.storage import open_location
from tests.support.access import Crash, crashing_at

HERE = Path(__file__).resolve().parents[1]


def test_flush_writes_one_object_and_load_merges_counts(dest):
    loc = open_location(dest)
    a, b = AccessLog(loc, "w1"), AccessLog(loc, "w2")
    assert a.flush() == 0 and log_names(loc) == []
    a.add("x", 10.0)
    a.add("x", 30.0)
    a.add("y", 20.0)
    b.add("x", 25.0)
    assert a.flush() == 2 and b.flush() == 1
    assert len(log_names(loc)) == 2
    assert load_access(loc) == {"x": Access(3, 30.0, ((0, 3),)), "y": Access(1, 20.0, ((0, 1),))}
    assert compact_access(loc) == {"logs": 2, "ids": 2, "generation": 1, "stepped_back": 0}
    assert log_names(loc) == [] and generations(loc) == [1]
    b.add("y", 40.0 + 2 * DAY)
    b.flush()
    both = {"x": Access(3, 30.0, ((0, 3),)), "y": Access(2, 40.0 + 2 * DAY, ((0, 1), (2, 1)))}
    assert load_access(loc) == both
    assert load_access(loc)["y"].reads_within(3 * DAY, 1) == 1 and load_access(loc)["x"].reads_within(3 * DAY, 2) == 0
    assert compact_access(loc)["generation"] == 2 and generations(loc) == [2]
    assert load_access(loc) == both
    b.add("y", 50.0 + 2 * DAY)
    b.flush()
    compact_access(loc, retention_days=1)  # day 0 is 2 days before the newest, day 2: a total only
    assert load_access(loc) == {"x": Access(3, 30.0), "y": Access(3, 50.0 + 2 * DAY, ((2, 2),))}


def test_a_failed_flush_keeps_its_counts_pending(tmp_path, monkeypatch):
    loc = open_location(str(tmp_path / "arc"))
    log = AccessLog(loc, "w")
    log.add("x", 1.0)
    crashing_at(monkeypatch, 0)
    with pytest.raises(Crash):
        log.flush()
    monkeypatch.undo()
    assert log.pending() == 1 and load_access(loc) == {}
    assert log.flush() == 1 and load_access(loc) == {"x": Access.read_at(1.0)}


def test_bad_writer_id_and_unreadable_object_are_one_line_errors(tmp_path):
    loc = open_location(str(tmp_path / "arc"))
    with pytest.raises(InputError):
        AccessLog(loc, "tcp://host:1")
    log = AccessLog(loc, "w")
    log.add("x")
    log.flush()
    path = loc.path("access", "logs", log_names(loc)[0] + ".json.gz")
    Path(path).write_bytes(Path(path).read_bytes()[:-5])  # truncated (not by lbdask: writes are atomic)
    with pytest.raises(IntegrityError, match="unreadable"):
        load_access(loc)


def scenario(loc, acked):
    """Flush, compact, flush twice, compact, flush, compact: `acked` gets the counts of each
    flush that returned; `inflight` holds the counts of the flush in progress."""
    writers = [AccessLog(loc, "wa"), AccessLog(loc, "wb")]
    scenario.inflight = {}
    steps = [(0, "abc"), None, (1, "ab"), (0, "cd"), None, (1, "a"), None]
    for step in steps:
        if step is None:
            compact_access(loc)
            continue
        who, ids = step
        for i in ids:
            writers[who].add(i, float(len(acked) + 1))
        scenario.inflight = {i: Access.read_at(float(len(acked) + 1)) for i in ids}
        writers[who].flush()
        access_log.merge_into(acked, scenario.inflight)
        scenario.inflight = {}


def test_a_crash_between_any_two_writes_never_corrupts_the_counts(dest, monkeypatch):
    clean = open_location(dest + "-clean")
    expected: dict[str, Access] = {}
    writes = crashing_at(monkeypatch, -1)  # counts, never crashes
    scenario(clean, expected)
    monkeypatch.undo()
    k = 0
    while True:
        loc = open_location(f"{dest}-{k}")
        acked: dict[str, Access] = {}
        done = crashing_at(monkeypatch, k)
        try:
            scenario(loc, acked)
            crashed = False
        except Crash:
            crashed = True
        monkeypatch.undo()
        with_inflight = dict(acked)
        access_log.merge_into(with_inflight, scenario.inflight)
        assert load_access(loc) in (acked, with_inflight), f"after write {k}: {done}"
        after_crash = load_access(loc)
        assert compact_access(loc)["stepped_back"] == 0  # the next compaction recovers
        assert load_access(loc) == after_crash and log_names(loc) == [] and len(generations(loc)) <= 1
        if not crashed:
            assert acked == expected and load_access(loc) == expected
            break
        k += 1
    assert k == len(writes) > 10  # every write of the scenario was crashed once


def test_a_compactor_overtaken_twice_does_not_delete_logs_it_committed_under_a_stale_number(tmp_path, monkeypatch):
    """Compactor A reads generation 0; meanwhile two others commit 1 and 2 (pruning 1) and a
    new log L is flushed; A's exclusive create of 1 then succeeds, but 2 is the current one."""
    loc = open_location(str(tmp_path / "arc"))
    log = AccessLog(loc, "w")
    real = access_log.log_names
    calls = []

    def overtaken(loc_):
        if not calls:
            calls.append(1)
            monkeypatch.setattr(access_log, "log_names", real)
            for i in ("x", "y"):
                log.add(i, 1.0)
                log.flush()
                compact_access(loc)
            assert generations(loc) == [2]
            log.add("late", 2.0)
            log.flush()
        return real(loc_)

    monkeypatch.setattr(access_log, "log_names", overtaken)
    compact_access(loc)
    assert load_access(loc) == {"x": Access.read_at(1.0), "y": Access.read_at(1.0), "late": Access.read_at(2.0)}


def test_a_read_overtaken_by_a_compaction_starts_over(tmp_path, monkeypatch):
    """The reader has the old generation; a compaction folds and deletes the logs before it lists them."""
    loc = open_location(str(tmp_path / "arc"))
    log = AccessLog(loc, "w")
    log.add("x", 1.0)
    log.flush()
    real = access_log.log_names

    def overtaken(loc_):
        monkeypatch.setattr(access_log, "log_names", real)
        compact_access(loc)
        return real(loc_)

    monkeypatch.setattr(access_log, "log_names", overtaken)
    assert load_access(loc) == {"x": Access.read_at(1.0)}


def test_concurrent_flushers_and_compactors_count_every_read_once(tmp_path):
    loc = open_location(str(tmp_path / "arc"))
    errors = []

    def flusher(n):
        try:
            log = AccessLog(loc, f"w{n}")
            for r in range(15):
                log.add(f"id{r % 4}", float(r))
                log.flush()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def compactor():
        try:
            for _ in range(15):
                assert compact_access(loc)["stepped_back"] == 0
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=flusher, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=compactor) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    compact_access(loc)
    stats = load_access(loc)
    assert sum(a.count for a in stats.values()) == 45
    assert stats["id0"] == Access.read_at(12.0, 12)


def test_sigkill_of_a_flushing_and_compacting_process(tmp_path):
    dest = str(tmp_path / "arc")
    out = tmp_path / "acked"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, str(HERE / "support" / "access_proc.py"), dest, f"p{round_}", str(out)])
        deadline = time.time() + 30
        while (not out.exists() or len(out.read_text().split()) < 3 + 4 * round_) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.01 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        acked = len(out.read_text().split())  # one line per flush that returned, of one read each
        total = sum(a.count for a in load_access(open_location(dest)).values())
        assert total in (acked, acked + 1)  # the flush in flight is whole or absent
        if total == acked + 1:
            with out.open("a") as f:
                f.write("x\n")  # count the in-flight flush as acked for the next round
    assert compact_access(open_location(dest))["stepped_back"] == 0


FORMAT_1 = HERE / "fixtures" / "access-format1"  # written by the format-1 code: see its README.md
JAN2, JAN20 = 20455, 20473  # UTC day numbers of 2026-01-02 and 2026-01-20
T1 = JAN20 * DAY + 8 * 3600.0


def test_format_1_objects_still_load(tmp_path):
    """A format-1 log's reads count on the day of its last read; a format-1 generation's
    totals have no day (they count in no window), and both survive a new compaction."""
    shutil.copytree(FORMAT_1, tmp_path / "arc")
    loc = open_location(str(tmp_path / "arc"))
    expected = {"old.png": Access(41, T1, ((JAN20, 1),)), "both.png": Access(7, T1, ((JAN20, 2),)),
                "new.png": Access(25, T1, ((JAN20, 25),))}
    assert load_access(loc) == expected
    assert [load_access(loc)[i].reads_within(T1 + DAY, 7) for i in ("old.png", "both.png", "new.png")] == [1, 2, 25]
    log = AccessLog(loc, "new")
    log.add("old.png", T1 + 60)
    log.flush()
    assert compact_access(loc) == {"logs": 2, "ids": 3, "generation": 2, "stepped_back": 0}
    expected["old.png"] = Access(42, T1 + 60, ((JAN20, 2),))
    assert load_access(loc) == expected and log_names(loc) == [] and generations(loc) == [2]


def test_the_serving_recorder_folds_with_its_retention(tmp_path):
    from lbdask.access.recorder import AccessRecorder
    from tests.support.archive import new_archive

    dest = str(tmp_path / "arc")
    new_archive(dest)   # a recorder writes into archives only (one renamed away gets nothing)
    loc = open_location(dest)
    now = time.time()
    earlier = AccessLog(loc, "earlier")
    earlier.add("x", now - 5 * DAY)
    earlier.flush()
    recorder = AccessRecorder("tcp://10.0.0.1:4000", 3600.0, 1, retention_days=2)  # folds on every flush
    try:
        recorder.record(dest, None, "x")
        assert recorder.flush() == 1 and log_names(loc) == []
    finally:
        recorder.close()
    x = load_access(loc)["x"]
    assert x.count == 2 and x.days == ((math.floor(x.last_access / DAY), 1),)  # 5 days ago: a total only


def test_a_generation_keeps_the_retention_days_and_older_reads_as_totals(tmp_path):
    """With a retention of one day a generation keeps the newest read's day and the day
    before; older reads count in the total only, also in every later compaction."""
    loc = open_location(str(tmp_path / "arc"))
    newest = math.floor(time.time() / DAY) - 10
    at = newest * DAY + 3600.0
    log = AccessLog(loc, "w")
    log.add("old.png", at - 5 * DAY)  # read before the retention only
    for k in (2, 1, 0):
        log.add("x.png", at - k * DAY)
    log.flush()
    compact_access(loc, retention_days=1)
    expected = {"old.png": Access(1, at - 5 * DAY, ()), "x.png": Access(3, at, ((newest - 1, 1), (newest, 1)))}
    assert load_access(loc) == expected
    assert load_access(loc)["x.png"].reads_within(at, 1) == 2
    log.add("y.png", at)
    log.flush()
    compact_access(loc, retention_days=1)
    assert load_access(loc) == {**expected, "y.png": Access(1, at, ((newest, 1),))}
