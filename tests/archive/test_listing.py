"""The ascending listing (`archive.listing.rows`) on a stand-in catalog (the `listing.Catalog`
protocol): a run replaced under the listing, a lost manifest, and v1 partitions replaced,
gone or unreadable; what the real catalog cannot be made to do on cue."""
import pytest

from lbdask.archive import listing
from lbdask.archive.catalog import Catalog
from lbdask.archive.catalog_view import View
from lbdask.archive.manifest import Manifest
from lbdask.archive.rows import CatalogRow
from lbdask.archive.runs import RunInfo
from lbdask.errors import IntegrityError
from lbdask.storage import open_location


def row(i, reason):
    return CatalogRow(id=i, status="failed", reason=reason)


def run(key):
    return RunInfo(key, 0, 0, 0, 0, 0, "", "")


class Stub:
    """A catalog whose manifests, runs and v1 partitions are dicts; `views` are the views
    found one after the other (`forget_view` moves to the next)."""

    def __init__(self, tmp_path, views, newest=None, runs=None, parts=None, vanish=None):
        self.loc = open_location(str(tmp_path))
        self.views, self.newest = views, newest
        self.run_rows, self.parts, self.vanish = runs or {}, parts or {}, vanish
        self.manifests = self
        self.runs = self
        self.listed = {"x": row("x", "listed")}
        self.asked, self.starts = [], []

    def discover(self, known=None):
        self.asked.append(known)
        return self.newest

    def scan(self, info, start=None):
        self.starts.append((info.key, start))
        if isinstance(self.run_rows[info.key], Exception):
            raise self.run_rows[info.key]
        for r in self.run_rows[info.key]:
            if start is None or r.id >= start:
                if (info.key, r.id) == self.vanish:  # the run was deleted while it was read
                    raise FileNotFoundError(info.key)
                yield r

    def view(self):
        if isinstance(self.views[0], Exception):
            raise self.views[0]
        return self.views[0]

    def forget_view(self):
        self.views = self.views[1:] or self.views

    retrying = Catalog.retrying  # the real one: it uses only loc and forget_view

    def listed_rows(self, found):
        if found is not None:
            found.append("batch z is unreadable")
        return self.listed

    def partition_rows(self, key):
        if isinstance(self.parts.get(key), Exception):
            raise self.parts[key]
        if key not in self.parts:
            raise FileNotFoundError(key)
        return self.parts[key]


def test_a_run_replaced_under_the_listing_goes_on_after_the_last_id_from_the_newer_manifest(tmp_path):
    """Each id once: the newer run is scanned from the last id given (`b`, a recent commit's)."""
    old = Manifest(1, runs=[run("r1")])
    new = Manifest(2, runs=[run("r2")])
    recent = {"b": row("b", "recent")}
    stub = Stub(tmp_path, [View(old, 0, recent), View(new, 0, recent)], newest=new, vanish=("r1", "c"),
                runs={"r1": [row(i, "r1") for i in "abcd"], "r2": [row(i, "r2") for i in "abcde"]})
    assert [(r.id, r.reason) for r in listing.rows(stub)] == [("a", "r1"), ("b", "recent"), ("c", "r2"),
                                                               ("d", "r2"), ("e", "r2")]
    assert stub.starts == [("r1", None), ("r2", "b")] and stub.asked == [1]  # probes after the generation read


def test_an_unreadable_run_is_a_problem_and_the_other_runs_still_list(tmp_path):
    m = Manifest(1, runs=[run("r1"), run("r2")])
    stub = Stub(tmp_path, [View(m, 0)], runs={"r1": IntegrityError("run r1 is unreadable"), "r2": [row("a", "r2")]})
    problems = []
    assert [r.id for r in listing.rows(stub, problems)] == ["a"] and problems == ["run r1 is unreadable"]


def test_a_lost_manifest_is_a_problem_and_the_batch_objects_still_list(tmp_path):
    stub = Stub(tmp_path, [IntegrityError("catalog manifest 3 is missing")])
    problems = []
    assert [r.id for r in listing.rows(stub, problems)] == ["x"]
    assert problems == ["catalog manifest 3 is missing", "batch z is unreadable"]


def test_a_v1_partition_replaced_under_the_listing_is_read_from_the_newer_file(tmp_path):
    m = Manifest(1, version=1, files={0: "p0-g1", 1: "p1-g1"})
    stub = Stub(tmp_path, [View(m, 0)], newest=Manifest(2, version=1, files={0: "p0-g2", 1: "p1-g1"}),
                parts={"p0-g2": {"a": row("a", "g2")}, "p1-g1": {"b": row("b", "g1")}})
    assert [(r.id, r.reason) for r in listing.rows(stub)] == [("a", "g2"), ("b", "g1")]


def test_v1_partitions_gone_without_a_newer_file_or_unreadable_are_named_problems(tmp_path):
    m = Manifest(1, version=1, files={0: "p0-g1", 1: "p1-g1", 2: "p2-g1"})
    stub = Stub(tmp_path, [View(m, 0)], newest=Manifest(2, runs=[]),  # converted to runs meanwhile
                parts={"p1-g1": IntegrityError("p1-g1 is unreadable"), "p2-g1": {"c": row("c", "g1")}})
    problems = []
    assert [r.id for r in listing.rows(stub, problems)] == ["c"]
    assert problems == [f"index partition 0: catalog object p0-g1 is missing: run `lbdask repair {stub.loc.url}`",
                        "index partition 1: p1-g1 is unreadable"]
    with pytest.raises(IntegrityError, match="index partition 0: .*; index partition 1: p1-g1 is unreadable"):
        list(listing.rows(stub))


def test_a_manifest_lost_before_a_listing_resumes_is_named_and_each_problem_once(tmp_path):
    """A run replaced under the listing, then the newer manifest lost: the resumed pass lists
    the batch objects after the last id and names the loss (it did not: the listing ended
    with fewer rows and no problem); the first pass's problems are not repeated."""
    old = Manifest(1, runs=[run("r1")])
    damaged = View(old, 0, damage=("batch y is unreadable",))
    stub = Stub(tmp_path, [damaged, damaged, IntegrityError("catalog manifest 2 is missing")],
                newest=Manifest(2, runs=[run("r2")]), vanish=("r1", "c"), runs={"r1": [row(i, "r1") for i in "abcd"]})
    stub.forget_view = lambda: setattr(stub, "views", stub.views[2:] or stub.views)  # found lost on resuming
    problems = []
    assert [r.id for r in listing.rows(stub, problems)] == ["a", "b", "x"]
    assert problems == ["batch y is unreadable", "catalog manifest 2 is missing", "batch z is unreadable"]
