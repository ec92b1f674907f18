"""The compiled simulator against the Python cache (same decisions) and against libCacheSim."""
from __future__ import annotations

import numpy as np
import pytest

from lbdask.cache import CacheConfig, DualFormatCache
from lbdask.cache.tuner import MarginalHitTuner, TunerConfig
from lbdask.sim import node_of, prepare, simulate
from lbdask.sim.trace import generate_trace


@pytest.fixture(scope="module")
def small_trace():
    return prepare(generate_trace(20_000, seed=11))


def _python_replay(prep, cache_frac, alpha, policy, nodes, window, gradient):
    capacity = int(cache_frac * prep.wss)
    owners = node_of(prep.orig_ids, nodes)
    caches = []
    for _ in range(nodes):
        tuner = MarginalHitTuner(TunerConfig(window=window, gradient=gradient)) if alpha is None else None
        caches.append(DualFormatCache(capacity, CacheConfig(policy=policy), tuner=tuner, alpha=alpha))
    codes = {"image": 0, "latent": 1, "miss": 2}
    outcomes, tails = [], []
    for o in prep.obj.tolist():
        cache = caches[owners[o]]
        r = cache.lookup(o)
        if r.outcome != "image":
            cache.fill(o, None, None, latent_size=int(prep.sizes[1, o]), image_size=int(prep.sizes[0, o]))
        outcomes.append(codes[r.outcome])
        tails.append(r.tail_hit)
    return np.array(outcomes, np.int8), np.array(tails), caches


@pytest.mark.parametrize("policy", ["lru", "s3fifo"])
@pytest.mark.parametrize("alpha,nodes,gradient", [(None, 1, "ghost"), (None, 3, "ghost"), (None, 1, "per_byte"),
                                                  (None, 3, "per_byte"), (None, 1, "paper"), (0.3, 1, "per_byte")])
def test_kernel_and_python_cache_make_identical_decisions(small_trace, policy, alpha, nodes, gradient):
    window = 500
    sim = simulate(small_trace, 0.02, alpha, policy, nodes=nodes, window=window, keep_outcomes=True,
                   gradient=gradient)
    outcomes, tails, caches = _python_replay(small_trace, 0.02, alpha, policy, nodes, window, gradient)
    assert len(set(outcomes.tolist())) == 3                      # all three outcomes occur
    assert tails.any()
    mismatch = np.flatnonzero(outcomes != sim.outcomes)
    assert mismatch.size == 0, f"first divergence at request {mismatch[:1]}"
    assert np.array_equal(tails, sim.tails)
    if alpha is None:
        for node, cache in enumerate(caches):
            py_alphas = [a for _, a in cache.tuner.history]
            assert np.allclose(py_alphas, sim.traj_alpha[sim.traj_node == node])
            assert len(py_alphas) > 3


def test_lru_single_tier_agrees_with_libcachesim():
    lcs = pytest.importorskip("libcachesim")
    prep = prepare(generate_trace(150_000, seed=12))
    for frac in (0.005, 0.02):
        capacity = int(frac * prep.wss)
        ref = lcs.LRU(capacity)
        hits = 0
        sizes = prep.sizes[0]
        for o in prep.obj.tolist():
            hits += ref.get(lcs.Request(obj_size=int(sizes[o]), obj_id=int(o) + 1))
        ref_miss = 1 - hits / prep.requests
        # alpha = 1: one LRU tier of images; without a tail it is plain LRU, miss for miss
        plain = simulate(prep, frac, 1.0, "lru", cache=CacheConfig(tail=0.0))
        assert plain.misses == prep.requests - hits
        # with the paper's main/tail split the byte budget is cut in two segments
        split = simulate(prep, frac, 1.0, "lru")
        assert abs(split.misses / prep.requests - ref_miss) <= 0.005 * ref_miss


def test_tuned_promotion_is_the_same_in_kernel_and_python_cache(small_trace):
    # `auto` under the ghost tuner starts eager (promote at the first latent hit) and each
    # window re-prices early images' bytes; at these cache sizes it switches both ways, and
    # both implementations must switch alike
    for frac in (0.02, 0.3):
        sim = simulate(small_trace, frac, None, "lru", window=500, keep_outcomes=True)
        tuner = MarginalHitTuner(TunerConfig(window=500))
        cache = DualFormatCache(int(frac * small_trace.wss), CacheConfig(), tuner=tuner)
        outcomes, seen = [], set()
        for o in small_trace.obj.tolist():
            r = cache.lookup(o)
            if r.outcome != "image":
                cache.fill(o, None, None, latent_size=int(small_trace.sizes[1, o]),
                           image_size=int(small_trace.sizes[0, o]))
            outcomes.append({"image": 0, "latent": 1, "miss": 2}[r.outcome])
            seen.add(cache.promote_after)
        assert np.array_equal(np.array(outcomes, np.int8), sim.outcomes), frac
        assert seen == {1, 8}, (frac, seen)
