"""Small contracts of the catalog: the partition function, manifests, caches, retries, messages."""
import pytest

from lbdask.archive import compaction
from lbdask.archive.catalog import PARTITION_CACHE, Catalog, partition_of
from lbdask.archive.compaction import compact
from lbdask.archive.manifest import Manifest
from lbdask.archive.objects import remove_quietly
from lbdask.archive.rows import CatalogRow
from lbdask.errors import IntegrityError
from lbdask.storage import open_location
from tests.support.v1_catalog import write_v1_catalog


def rows_for(batch, ids):
    return [CatalogRow(id=i, status="failed", reason=batch) for i in ids]


@pytest.fixture
def cat(tmp_path):
    return Catalog(open_location(str(tmp_path / "arc")), partitions=8)


def test_the_partition_function_is_part_of_the_format():
    # int(sha1(id)[:8], 16) % partitions: changing it would orphan every existing index
    assert [partition_of(i, 256) for i in ("img005.png", "a", "d0/img3.png")] == [37, 55, 255]
    assert [partition_of(i, 7) for i in ("img005.png", "a", "d0/img3.png")] == [6, 6, 1]


def test_manifest_round_trip_records_the_folded_batches(cat):
    # v1 layouts never say whether their writer kept log slots (lookups list batches there anyway)
    m = Manifest(3, 8, {1: "catalog/index/g000003-x/p00001.jsonl.gz"}, ["b1", "b2"], version=1, log_next=5,
                 slots_kept=False)
    assert Manifest.from_json(m.to_json()) == m
    old = b'{"generation": 2, "partitions": 8, "files": {"1": "k"}, "folded": ["a"]}'  # written by lbdask before v2
    assert Manifest.from_json(old) == Manifest(2, 8, {1: "k"}, ["a"], version=1, log_next=0, slots_kept=False)
    v2 = Manifest(4, folded=["b3"], log_next=9)
    assert Manifest.from_json(v2.to_json()) == v2 and b'"version": 2' in v2.to_json() and v2.slots_kept
    before = v2.to_json().replace(b'"slots_kept": true', b'"x": 1')  # a v2 manifest written before the field
    assert not Manifest.from_json(before).slots_kept
    cat.commit("b1", rows_for("b1", ["x"]))
    cat.commit("b2", rows_for("b2", ["y"]))
    compact(cat)
    assert Catalog(cat.loc).manifest().folded == ["b1", "b2"]


def test_compacting_nothing_and_stepping_back_report_what_happened(cat, monkeypatch):
    assert compact(cat) == {"batches": 0, "rows": 0, "generation": 0, "stepped_back": 0}
    cat.commit("b1", rows_for("b1", ["x"]))
    monkeypatch.setattr(cat.manifests, "create", lambda manifest: False)  # every attempt loses the race
    assert compact(cat, attempts=2) == {"batches": 0, "rows": 0, "generation": 0, "stepped_back": 1}
    assert cat.get_row("x").reason == "b1" and cat.batch_names() == ["b1"]
    assert not cat.loc.fs.exists(cat.loc.path("catalog", "index")) or not cat.loc.fs.find(cat.loc.path("catalog", "index"))


def test_a_file_vanishing_under_a_compaction_makes_it_start_over(cat, monkeypatch):
    cat.commit("b1", rows_for("b1", ["x"]))
    real = compaction._attempt
    calls = []

    def flaky(catalog):
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError("folded by another compactor")
        return real(catalog)

    monkeypatch.setattr(compaction, "_attempt", flaky)
    assert compact(cat) == {"batches": 1, "rows": 1, "generation": 1, "stepped_back": 0}


@pytest.mark.parametrize("misses,ok", [(1, True), (2, True), (3, False)])
def test_reads_retry_when_a_file_vanishes_and_name_it_when_it_stays_missing(cat, monkeypatch, misses, ok):
    cat.commit("b0", rows_for("b0", ["w"]))
    compact(cat)  # lookups now find b1 through its log slot only
    cat.commit("b1", rows_for("b1", ["x"]))
    real, left = cat.batch_rows, [misses]

    def vanishing(name):
        if left[0]:
            left[0] -= 1
            raise FileNotFoundError(2, "No such file", "/arc/catalog/batches/b1.jsonl.gz")
        return real(name)

    monkeypatch.setattr(cat, "batch_rows", vanishing)
    if ok:
        assert cat.get_row("x").reason == "b1"
    else:
        with pytest.raises(IntegrityError, match=r"catalog object /arc/catalog/batches/b1.jsonl.gz is missing"):
            cat.get_row("x")


def test_batch_objects_are_read_once_per_catalog(cat, monkeypatch):
    cat.commit("b1", rows_for("b1", ["x", "y"]))
    reads = []
    real = cat.loc.fs.cat_file
    monkeypatch.setattr(cat.loc.fs, "cat_file", lambda path, *a, **k: (reads.append(path), real(path, *a, **k))[1])
    assert cat.get_row("x").id == "x" and cat.get_row("y").id == "y" and cat.get_row("z") is None
    assert reads.count(cat.batch_path("b1")) == 1 and not [r for r in reads if "/catalog/batches/" in r and "b1" not in r]
    legacy = cat.loc.path("catalog", "index", "manifest.json")  # probed once: archives from before generations
    assert reads.count(legacy) <= 1


def test_the_partition_cache_of_a_v1_catalog_keeps_the_most_recently_used(tmp_path):
    loc = open_location(str(tmp_path / "arc"))
    ids = [f"img{i}.png" for i in range(400)]
    write_v1_catalog(loc, {"b": rows_for("b", ids)}, partitions=64)
    reader = Catalog(loc, partitions=64)
    order = []
    for i in ids:
        part = partition_of(i, 64)
        if part not in order:
            order.append(part)
            assert reader.get_row(i).id == i
    files = reader.manifest().files
    assert len(order) > PARTITION_CACHE
    assert list(reader._parts) == [files[p] for p in order[-PARTITION_CACHE:]]
    reader.get_row(ids[0])  # re-reads the evicted first partition, evicting the oldest cached
    assert list(reader._parts)[-1] == files[order[0]] and files[order[-PARTITION_CACHE]] not in reader._parts


def test_unreadable_catalog_objects_are_named(cat):
    cat.commit("b1", rows_for("b1", ["x"]))
    compact(cat)
    cat.commit("b2", rows_for("b2", ["y"]))
    cat.loc.fs.pipe_file(cat.batch_path("b2"), b"garbage")
    with pytest.raises(IntegrityError, match=r"catalog object .*b2.jsonl.gz is unreadable"):
        Catalog(cat.loc).get_row("x")
    problems = []
    assert [r.id for r in Catalog(cat.loc).rows(problems)] == ["x"]
    assert len(problems) == 1 and "b2.jsonl.gz is unreadable" in problems[0]
    with pytest.raises(IntegrityError, match=r"b2.jsonl.gz is unreadable"):
        compact(Catalog(cat.loc))
    run = cat.loc.path(cat.manifest().runs[0].key)
    cat.loc.fs.rm_file(run)
    with pytest.raises(IntegrityError, match=r"b2.jsonl.gz is unreadable \(BadGzipFile\); catalog object .*\.run is missing"):
        list(Catalog(cat.loc).rows())


def test_removing_objects_that_are_already_gone_is_fine(cat):
    cat.commit("b1", rows_for("b1", ["x"]))
    remove_quietly(cat.loc, [cat.batch_path("b1"), cat.batch_path("gone")])
    assert not cat.loc.fs.exists(cat.batch_path("b1"))


def test_a_failed_conditional_put_is_recognised_also_when_s3fs_wrapped_it():
    from botocore.exceptions import ClientError

    from lbdask.archive.objects import PRECONDITION_FAILED, _status

    refused = ClientError({"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}},
                          "PutObject")
    try:
        try:
            raise refused
        except ClientError as exc:
            raise OSError("precondition failed") from exc  # what s3fs's error translation raises
    except OSError as wrapped:
        assert _status(wrapped) == PRECONDITION_FAILED == 412
    assert _status(refused) == 412
    try:
        try:
            raise refused
        except ClientError:
            raise OSError("translated without `from`")  # noqa: B904 - implicit chaining on purpose
    except OSError as chained:
        assert _status(chained) == 412
    assert _status(OSError("no response")) is None
    assert _status(ClientError({"Error": {"Code": "Slow"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")) == 503


def test_bad_batches_are_refused_with_a_reason(cat):
    from lbdask.errors import InputError

    with pytest.raises(InputError, match=r"invalid batch id '\.\./x': use letters, digits"):
        cat.commit("../x", rows_for("b", ["x"]))
    with pytest.raises(InputError, match=r"batch b1 lists an image id more than once"):
        cat.commit("b1", rows_for("b1", ["x", "x"]))
    assert cat.batch_names() == [] and Catalog(cat.loc).get_row("x") is None


def test_an_unreadable_manifest_is_named(cat):
    cat.commit("b1", rows_for("b1", ["x"]))
    compact(cat)
    path = cat.manifests.path(1)
    cat.loc.fs.rm_file(cat.manifests.hint_path())  # the hint is a good copy: readers would not read the manifest
    cat.loc.fs.pipe_file(path, b"{not json")
    with pytest.raises(IntegrityError, match=r"catalog manifest .*0000000001.json is unreadable \(JSONDecodeError\): run `lbdask repair"):
        Catalog(cat.loc).get_row("x")
    cat.loc.fs.pipe_file(path, Manifest(7, 8, version=1).to_json())
    with pytest.raises(IntegrityError, match=r"0000000001.json says generation 7"):
        Catalog(cat.loc).get_row("x")


def test_an_archive_from_before_manifest_generations_reads_and_compacts_on(cat):
    # Archives written before compare-and-swap compaction kept one mutable catalog/index/manifest.json
    write_v1_catalog(cat.loc, {"b1": rows_for("b1", ["x", "y"])}, legacy=True)
    old = Catalog(cat.loc)
    assert old.get_row("x").reason == "b1" and sorted(r.id for r in old.rows()) == ["x", "y"]
    old.commit("b2", rows_for("b2", ["z"]))
    compact(old)  # builds generation 2 on the legacy one: its partitions go into the run
    fresh = Catalog(cat.loc)
    assert fresh.manifests.generations() == [2] and fresh.manifest().version == 2
    assert [r.id for r in fresh.rows()] == ["x", "y", "z"] and fresh.get_row("y").reason == "b1"


def test_a_v1_catalog_reads_lists_and_converts_on_its_first_compaction_losing_nothing(cat):
    folded = {f"f{b}": rows_for(f"f{b}", [f"img{b * 30 + j:03d}" for j in range(30)]) for b in range(3)}
    unfolded = {"u0": rows_for("u0", ["img005", "new"])}  # written by lbdask before the commit log
    expected = write_v1_catalog(cat.loc, folded, unfolded)
    old = Catalog(cat.loc)
    assert old.manifest().version == 1 and old.get_row("img005").reason == "u0" and old.get_row("img031").reason == "f1"
    assert [(r.id, r.reason) for r in old.rows()] == [(i, expected[i].reason) for i in sorted(expected)]
    old.commit("n1", rows_for("n1", ["img090", "img000"]))
    expected.update({r.id: r for r in rows_for("n1", ["img090", "img000"])})
    assert compact(old)["batches"] == 2  # u0 (listed) and n1 (announced)
    new = Catalog(cat.loc)
    manifest = new.manifest()
    assert manifest.version == 2 and manifest.files == {} and [r.rows for r in manifest.runs] == [len(expected)]
    assert [(r.id, r.reason) for r in new.rows()] == [(i, expected[i].reason) for i in sorted(expected)]
    assert all(new.get_row(i).reason == row.reason for i, row in expected.items())
    assert not cat.loc.fs.exists(cat.loc.path("catalog", "index")) or not cat.loc.fs.find(cat.loc.path("catalog", "index"))
