"""Ghost-list tuning (src/lbdask/cache/tuner.py `ghost`): bounded bookkeeping and alpha that moves far."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbdask.cache import CacheConfig, DualFormatCache
from lbdask.cache.ghost import GhostList
from lbdask.cache.promotion import early_hit
from lbdask.cache.tuner import MarginalHitTuner, TunerConfig, ghost_gradient


@given(st.integers(0, 500), st.lists(st.tuples(st.integers(0, 30), st.integers(1, 120)), max_size=200))
@settings(deadline=None)
def test_ghost_list_never_holds_more_bytes_than_its_budget(capacity, adds):
    ghost = GhostList(capacity)
    for key, size in adds:
        ghost.add(key, size)
        assert ghost.bytes <= capacity
        assert ghost.bytes == sum(ghost._keys.values())
    if adds and capacity >= adds[-1][1]:
        assert ghost.pop(adds[-1][0])                   # the newest entry fits, so it is remembered
    ghost.resize(capacity // 2)
    assert ghost.bytes <= capacity // 2


@given(st.integers(1_000, 20_000), st.floats(0.0, 1.0),
       st.lists(st.tuples(st.integers(0, 60), st.integers(50, 900)), min_size=1, max_size=400))
@settings(max_examples=60, deadline=None)
def test_cache_ghosts_and_alpha_stay_bounded(capacity, alpha0, stream):
    tuner = MarginalHitTuner(TunerConfig(alpha=min(0.95, max(0.05, alpha0)), window=50, ghost_events=4,
                                         ghost_step=0.3))
    cache = DualFormatCache(capacity, CacheConfig(promote_after=2), tuner=tuner)
    budget = int(tuner.config.ghost * capacity)
    for key, size in stream:
        r = cache.lookup(key)
        if r.outcome != "image":
            cache.fill(key, None, None, latent_size=max(1, size // 5), image_size=size)
        assert cache.image.ghost.bytes <= budget and cache.latent.ghost.bytes <= budget
        assert 0.0 <= cache.alpha <= 1.0 and cache.image.used + cache.latent.used <= capacity
        assert cache.image.ghost._keys.keys().isdisjoint(cache.image._tail.keys())
        held = [e for t in (cache.image, cache.latent) for e in [*t._tail.values(), *t._main.values()]]
        assert cache.early_bytes == sum(e.extra for e in held if early_hit(e.hits))   # promotion's price


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000), st.floats(0.1, 1e4), st.floats(0.1, 1e4))
@settings(deadline=None)                                  # the first call compiles (numba)
def test_ghost_gradient_is_normalised_and_signed(img, img_latent, lat, t_decode, t_fetch):
    d = ghost_gradient(img, img_latent, lat, t_decode, t_fetch)
    assert -1.0 <= d <= 1.0
    if (img or img_latent) and not lat:
        assert d == -1.0                                 # only the image tier would have gained
    if lat and not img and not img_latent:
        assert d == 1.0


def _loop(cache, n_keys, rounds, image_size, latent_size):
    for i in range(n_keys * rounds):
        k = i % n_keys
        if cache.lookup(k).outcome != "image":
            cache.fill(k, None, None, latent_size=latent_size, image_size=image_size)


@given(st.integers(1000, 1100))
@settings(max_examples=10, deadline=None)
def test_a_loop_just_larger_than_the_image_tier_grows_it(image_size):
    # a loop of 40 images of ~1 kB against an image tier of 5 kB with a 500 B tail: the tail
    # cannot hold one image, so tail hits never happen; the 50 kB ghost sees every re-reference
    tuner = MarginalHitTuner(TunerConfig(alpha=0.1, window=10**6, ghost=1.0, ghost_events=16, ghost_step=0.1))
    cache = DualFormatCache(50_000, CacheConfig(promote_after="auto"), tuner=tuner)
    tuner.observe_decode(500.0)                          # decodes dear: promote at the first decode
    tuner.observe_fetch(10.0)
    cache.set_costs(tuner.t_decode, tuner.t_fetch)
    _loop(cache, 40, 30, image_size, 100)
    assert tuner.alpha >= 0.79                           # travelled most of its range
    assert all(d < 0 for d, _ in tuner.history[:5])


@given(st.integers(900, 1100))
@settings(max_examples=10, deadline=None)
def test_a_loop_of_latents_larger_than_the_latent_tier_grows_it(latent_size):
    # never promoted: only the latent tier serves, and its ghost sees the loop's re-references
    tuner = MarginalHitTuner(TunerConfig(alpha=0.9, window=10**6, ghost=1.0, ghost_events=16, ghost_step=0.1))
    cache = DualFormatCache(50_000, CacheConfig(promote_after=10**6), tuner=tuner)
    _loop(cache, 40, 30, 5 * latent_size, latent_size)
    assert tuner.alpha <= 0.21
    assert all(d > 0 for d, _ in tuner.history[:5])


def test_ghost_tuning_is_the_default_and_validated():
    assert TunerConfig().gradient == "ghost"
    from lbdask.errors import ConfigError
    with pytest.raises(ConfigError, match="ghost"):
        MarginalHitTuner(TunerConfig(ghost_events=0))
