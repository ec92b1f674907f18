"""`lbdask ls` prints the rows as the catalog streams them: in ascending id order, each line as
soon as its row is read (nothing collected or sorted first)."""

from lbdask.archive import Archive, CatalogRow
from lbdask.cli import main
from tests.support.archive import MODEL


def listed_ids(out: str) -> list[str]:
    return [line.split("\t", 1)[0] for line in out.splitlines()[1:]]


def test_ls_lists_ids_in_ascending_order_folded_or_not(tmp_path, capsys):
    dest = str(tmp_path / "arc")
    arc = Archive.create(dest, MODEL)
    ids = [f"img-{(n * 37) % 101:03d}.png" for n in range(101)]  # not in commit order
    for b in range(0, 101, 20):
        arc.commit(f"b{b:03d}", [CatalogRow(id=i, status="refused") for i in ids[b:b + 20]])
        if b == 40:
            arc.compact()  # some rows in the index, the rest in batch objects
    assert main(["ls", dest]) == 0
    assert listed_ids(capsys.readouterr().out) == sorted(ids)


def test_ls_prints_each_row_before_it_reads_the_next(tmp_path, capsys, monkeypatch):
    dest = str(tmp_path / "arc")
    Archive.create(dest, MODEL)

    def two_rows_then_broken(self, problems=None):
        yield CatalogRow(id="a.png", status="refused")
        yield CatalogRow(id="b.png", status="kept")
        raise RuntimeError("the store went away")

    monkeypatch.setattr(Archive, "rows", two_rows_then_broken)
    assert main(["ls", dest]) == 1
    captured = capsys.readouterr()
    assert listed_ids(captured.out) == ["a.png", "b.png"] and "the store went away" in captured.err
