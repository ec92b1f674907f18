"""The commit log's own functions (`archive.commit_log`): the end of the log found in a
logarithmic number of HEADs, slots listed newest first in both layouts, and a damaged slot
named in its integrity error."""
import pytest

from lbdask.archive import commit_log, reads
from lbdask.archive.commit_log import CommitLog, Slot, claim, first_absent, listed_slots, read_slot, slot_path
from lbdask.errors import IntegrityError
from lbdask.storage import open_location


def log_of(tmp_path, n, fanned=True):
    log = CommitLog(open_location(str(tmp_path)), fanned=fanned)
    for i in range(n):
        assert claim(log, i, Slot(i, batch=f"b{i}")) == i
    return log


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 40])
def test_the_first_absent_slot_is_found_in_a_logarithmic_number_of_heads(tmp_path, n, monkeypatch):
    log = log_of(tmp_path, n)
    heads, real = [], reads.present
    monkeypatch.setattr(commit_log, "present", lambda loc, path: heads.append(path) or real(loc, path))
    for start in sorted({0, n // 2, n - 1, n}):
        heads.clear()
        assert first_absent(log, start) == n
        assert len(heads) <= 2 * max(1, n - start).bit_length() + 1
    assert first_absent(log, n + 5) == n + 5


def test_slots_are_listed_newest_first_across_folders_and_in_the_flat_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(commit_log, "SLOTS_PER_FOLDER", 2)
    assert list(listed_slots(log_of(tmp_path / "fanned", 5))) == [4, 3, 2, 1, 0]
    assert list(listed_slots(log_of(tmp_path / "flat", 3, fanned=False))) == [2, 1, 0]
    assert list(listed_slots(CommitLog(open_location(str(tmp_path / "none"))))) == []


def test_a_damaged_slot_is_an_integrity_error_naming_it(tmp_path):
    log = log_of(tmp_path, 2)
    path = slot_path(log, 1)
    with open(path, "wb") as f:
        f.write(b"{not json")
    assert read_slot(log, 0) == Slot(0, batch="b0") and read_slot(log, 2) is None
    with pytest.raises(IntegrityError, match=rf"catalog log slot {path} is unreadable \(JSONDecodeError\)"):
        read_slot(log, 1)


@pytest.mark.parametrize("n", [2, 40])
def test_a_writer_behind_the_end_claims_the_first_free_slot_searching_in_heads_not_creates(tmp_path, n, monkeypatch):
    """The cursor and the next slot taken: the end of the log is found by HEADs (one when it is
    the very next slot), never by a create per slot, and no slot is skipped (a hole would end
    every reader's walk of the log before the claimed slot)."""
    log = log_of(tmp_path, n)
    heads, creates = [], []
    real_present, real_put = reads.present, commit_log.put_exclusive
    monkeypatch.setattr(commit_log, "present", lambda loc, path: heads.append(path) or real_present(loc, path))
    monkeypatch.setattr(commit_log, "put_exclusive", lambda loc, path, blob: creates.append(path) or real_put(loc, path, blob))
    assert claim(log, 0, Slot(0, fence=1)) == n
    assert len(creates) == 3 and len(heads) <= (1 if n == 2 else 2 * n.bit_length() + 1)
    assert read_slot(log, n) == Slot(n, fence=1)  # a fence reads back with its slot's number
