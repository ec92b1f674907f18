"""The catalog view's tracker (`archive.catalog_view`) on a real commit log with stand-in
manifests: how far it follows compactions that keep committing, the fences it passes without
looking for a newer manifest, a view that stays the same object when nothing is new (a
snapshot's refresh relies on it), and the damage of unannounced batches."""
from lbdask.archive.catalog_view import FOLLOW, Tracker, View
from lbdask.archive.commit_log import CommitLog, Slot, claim
from lbdask.archive.manifest import Manifest
from lbdask.archive.rows import CatalogRow
from lbdask.storage import open_location


def row(i):
    return CatalogRow(id=i, status="failed", reason="x")


def tracker(log, discover, unannounced=lambda: ({}, [])):
    return Tracker(log, discover, lambda batch: {f"{batch}.png": row(f"{batch}.png")}, unannounced)


def test_a_view_follows_compactions_that_keep_committing_only_so_far(tmp_path):
    """Slot s holds compaction s+1's fence and every discovery finds one generation more:
    a view follows FOLLOW generations from where it started, then reads on in the one it holds."""
    n = 40
    log = CommitLog(open_location(str(tmp_path)))
    for s in range(n):
        claim(log, s, Slot(s, fence=s + 1))
    asked = []

    def discover(known):
        asked.append(known)
        g = 0 if known is None else min(known + 1, n)
        return Manifest(generation=g, log_next=g)

    t = tracker(log, discover)
    view = t.fresh(None)
    assert (view.manifest.generation, view.end) == (FOLLOW, n)
    assert t.advance(View(Manifest(generation=0, log_next=0), 0)).manifest.generation == FOLLOW
    asked.clear()
    assert t.fresh(3).manifest.generation == 4 + FOLLOW and asked[0] == 3  # probes after the known one


def test_fences_not_newer_than_the_view_are_passed_and_an_unchanged_view_is_kept(tmp_path):
    """A fence of the view's own generation (the one `lbdask upgrade` claims) costs no manifest
    discovery; one of a crashed compaction costs one, and the view moves past both."""
    log = CommitLog(open_location(str(tmp_path)))
    claim(log, 0, Slot(0, fence=3))
    claim(log, 1, Slot(1, batch="b1"))
    claim(log, 2, Slot(2, fence=4))  # compaction 4 crashed after claiming its fence
    asked = []
    t = tracker(log, lambda known: asked.append(known) or Manifest(generation=3, log_next=0))
    view = t.fresh(None)
    assert asked == [None, 3]
    assert (view.end, view.batches, list(view.recent)) == (3, ("b1",), ["b1.png"])
    assert t.advance(view) is view  # nothing new: the same view (a snapshot's refresh keeps its partitions)
    claim(log, 3, Slot(3, fence=4))  # another crashed try
    advanced = t.advance(view)
    assert advanced.end == 4 and advanced.recent == view.recent and advanced.batches == view.batches


def test_unreadable_unannounced_batches_are_the_views_damage(tmp_path):
    """Before the first compaction the batch objects are listed: an unreadable one is damage, not a batch."""
    log = CommitLog(open_location(str(tmp_path)))
    view = tracker(log, lambda known: Manifest(), lambda: ({"a.png": row("a.png")}, ["batch x is unreadable"])).fresh(None)
    assert view.damage == ("batch x is unreadable",) and view.batches == () and list(view.recent) == ["a.png"]
