"""`lbdask verify --sample N` and `--all --sample N` pick their rows by reservoir sampling: one
pass over the catalog holding N rows, reproducible for a seed, uniform over the rows."""
from collections import Counter

from lbdask.archive import CatalogRow
from lbdask.verify import reservoir, sample_rows


def test_reservoir_sampling_is_uniform():
    """Every item lands in the sample equally often over many seeds (chi-square, fixed seeds:
    the same numbers on every run, so never red by chance)."""
    items, n, trials = range(20), 5, 4000
    counts = Counter(i for seed in range(trials) for i in reservoir(items, n, seed))
    expected = trials * n / len(items)
    chi2 = sum((counts[i] - expected) ** 2 / expected for i in items)
    assert chi2 < 43.8  # 19 degrees of freedom, p = 0.001
    assert all(len(reservoir(items, n, seed)) == n for seed in range(10))


def test_reservoir_is_reproducible_and_takes_all_of_a_short_stream():
    assert reservoir(range(1000), 7, seed=3) == reservoir(range(1000), 7, seed=3)
    assert reservoir(range(1000), 7, seed=3) != reservoir(range(1000), 7, seed=4)
    assert reservoir(range(4), 7) == [0, 1, 2, 3]
    assert reservoir(range(4), 0) == []


def test_sample_rows_returns_rows_with_stored_bytes_in_id_order_or_streams_them_all():
    rows = [CatalogRow(id=f"{n:03d}.png", status="refused" if n % 5 == 0 else "latent") for n in range(200, 0, -1)]
    picked = sample_rows(iter(rows), 10, seed=1)
    assert [r.id for r in picked] == sorted(r.id for r in picked) and len(picked) == 10
    assert all(r.status == "latent" for r in picked)
    assert [r.id for r in sample_rows(iter(rows), 10, seed=1)] == [r.id for r in picked]
    assert [r.id for r in sample_rows(iter(rows), 0)] == [r.id for r in rows if r.status != "refused"]  # as they came
