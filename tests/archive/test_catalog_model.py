"""Property-based stateful test: the catalog behaves like a dict under commit, compact, crash and reads."""
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lbdask.archive import compaction
from lbdask.archive.catalog import Catalog
from lbdask.archive.compaction import compact
from lbdask.archive.rows import CatalogRow
from lbdask.archive.snapshot import CatalogSnapshot
from lbdask.storage import open_location

IDS = st.sampled_from([f"d{i % 3}/img{i}.png" for i in range(12)])


class Crash(Exception):
    pass


def crashing_after(k):
    """Patch the compaction's store mutations so that the k-th one raises Crash; returns an undo."""
    calls = [0]
    originals = {name: getattr(compaction, name) for name in ("put_atomic", "remove_quietly", "claim_slot", "write_run")}

    def wrap(real):
        def wrapper(*args, **kwargs):
            if calls[0] == k:
                raise Crash
            calls[0] += 1
            return real(*args, **kwargs)
        return wrapper

    for name, real in originals.items():
        setattr(compaction, name, wrap(real))
    return lambda: [setattr(compaction, n, r) for n, r in originals.items()]


class CatalogMachine(RuleBasedStateMachine):
    @initialize(partitions=st.sampled_from([1, 3, 8]))
    def start(self, partitions):
        self.root = tempfile.mkdtemp(prefix="catalog-model-")
        self.partitions = partitions
        self.cat = Catalog(open_location(self.root), partitions=partitions)
        self.model: dict[str, str] = {}
        self.batches: set[str] = set()
        self.n = 0

    def teardown(self):
        shutil.rmtree(getattr(self, "root", ""), ignore_errors=True)

    @rule(ids=st.lists(IDS, min_size=1, max_size=4, unique=True))
    def commit(self, ids):
        self.n += 1
        batch = f"b{self.n:04d}"
        assert self.cat.commit(batch, [CatalogRow(id=i, status="failed", reason=batch) for i in ids])
        assert not self.cat.commit(batch, [])
        self.batches.add(batch)
        self.model.update({i: batch for i in ids})

    @rule()
    def compact(self):
        done = compact(self.cat)
        assert done["stepped_back"] == 0

    @rule(k=st.integers(0, 8))
    def crash_during_compaction(self, k):
        undo = crashing_after(k)
        try:
            compact(self.cat)
        except Crash:
            pass
        finally:
            undo()

    @rule()
    def reopen(self):
        self.cat = Catalog(open_location(self.root), partitions=self.partitions)

    @rule(image_id=IDS)
    def lookup(self, image_id):
        row = self.cat.get_row(image_id)
        assert (row.reason if row else None) == self.model.get(image_id)
        snap = CatalogSnapshot(self.cat, max_age=0).get_row(image_id)
        assert (snap.reason if snap else None) == self.model.get(image_id)

    @invariant()
    def rows_match_the_model(self):
        if not hasattr(self, "model"):
            return
        rows = list(self.cat.rows())
        assert len(rows) == len({r.id for r in rows})
        assert {r.id: r.reason for r in rows} == self.model
        for batch in self.batches:
            assert self.cat.is_committed(batch)


TestCatalogModel = CatalogMachine.TestCase
TestCatalogModel.settings = settings(max_examples=int(os.environ.get("LBDASK_MODEL_EXAMPLES", "40")), stateful_step_count=25, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
