"""Archives written before catalog v2 (format version 1) open, read, list and convert without loss."""
import pytest

from lbdask.archive import FORMAT_VERSION, Archive, CatalogRow
from lbdask.archive.creation import set_format_version
from lbdask.cli import main
from lbdask.storage import open_location
from tests.support.archive import new_archive
from tests.support.v1_catalog import write_v1_catalog


def v1_archive(dest):
    """An archive as lbdask wrote it before issue 25: format version 1, a hash-partitioned
    catalog with folded batches and one batch not yet folded."""
    new_archive(dest)
    loc = open_location(dest)
    set_format_version(loc, 1)
    folded = {f"b{b}": [CatalogRow(id=f"img{b}{j}.png", status="failed", reason=f"b{b}") for j in range(5)]
              for b in range(4)}
    late = {"late": [CatalogRow(id="img00.png", status="failed", reason="late"),
                     CatalogRow(id="new.png", status="failed", reason="late")]}
    rows = write_v1_catalog(loc, folded, late, partitions=16)
    return {i: r.reason for i, r in rows.items()}


def listing(dest):
    return [(r.id, r.reason) for r in Archive.open(dest).rows()]


@pytest.mark.parametrize("how", ["compact", "upgrade"])
def test_v1_archive_converts(dest, how, capsys):
    """A version 1 archive reads and lists as it is, and converts (compaction or upgrade) losing nothing."""
    expected = v1_archive(dest)
    arc = Archive.open(dest)
    assert arc.format_version == 1 and arc.catalog.manifest().version == 1
    assert arc.get_row("img00.png").reason == "late" and arc.get_row("img31.png").reason == "b3"
    assert listing(dest) == sorted(expected.items())
    if how == "compact":
        Archive.open(dest, mode="a").compact()
    else:
        assert main(["upgrade", dest]) == 0
        assert "from archive format version 1 to 2" in capsys.readouterr().out
    arc = Archive.open(dest)
    assert arc.format_version == FORMAT_VERSION == 2
    manifest = arc.catalog.manifest()
    assert manifest.version == 2 and manifest.files == {} and sum(r.rows for r in manifest.runs) == len(expected)
    assert listing(dest) == sorted(expected.items())
    assert all(arc.get_row(i).reason == reason for i, reason in expected.items())
    assert main(["upgrade", dest]) == 0 and "already archive format version 2" in capsys.readouterr().out
