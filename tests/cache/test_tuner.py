"""The tail-hit tuner gradients (ghost lists: cache/test_ghost_tuning.py): eq. 2, EWMAs, clamps, streams."""
from __future__ import annotations

import pytest

from lbdask.cache import CacheConfig, DualFormatCache
from lbdask.cache.tuner import MarginalHitTuner, TunerConfig, marginal_gradient
from lbdask.errors import ConfigError


def test_gradient_matches_equation_2_by_hand():
    # 100 requests: 60 image misses, 15 of them full misses; 5 image tail hits, 6 latent tail hits
    d = marginal_gradient(100, 60, 15, 5, 6, 40.0, 140.0, 0.3, False)
    mr_img, d_img, mr_lat, d_lat = 0.6, 0.05, 15 / 60, 6 / 60
    assert d == pytest.approx(-d_img * (40 + 140 * mr_lat) + 140 * mr_img * d_lat)
    per_byte = marginal_gradient(100, 60, 15, 5, 6, 40.0, 140.0, 0.3, True)
    assert per_byte == pytest.approx(-d_img / 0.3 * (40 + 140 * mr_lat) + 140 * mr_img * d_lat / 0.7)


def test_per_byte_gradient_removes_the_bias_toward_the_larger_tier():
    # alpha = 0.2: the latent tail holds 4x the bytes of the image tail, and both see
    # 10 tail hits: per byte, the image tail is worth 4x more.
    args = (100, 50, 25, 10, 10, 40.0, 140.0, 0.2)
    assert marginal_gradient(*args, False) > 0       # as printed: shrink the small image tier further
    per_byte = marginal_gradient(*args, True)        # per byte the image tier is worth more
    assert per_byte < 0


def _feed(tuner, image=0, image_tail=0, latent=0, latent_tail=0, miss=0):
    for _ in range(image):
        tuner.record("image", False)
    for _ in range(image_tail):
        tuner.record("image", True)
    for _ in range(latent):
        tuner.record("latent", False)
    for _ in range(latent_tail):
        tuner.record("latent", True)
    for _ in range(miss):
        tuner.record("miss", False)


def test_latency_feedback_flips_the_direction():
    cfg = TunerConfig(window=100, step=0.01, ewma_weight=0.5, t_decode_ms=40.0, t_fetch_ms=40.0,
                      gradient="per_byte")
    tuner = MarginalHitTuner(cfg)
    # delta_img = 0.1, MR_img = 0.5, MR_lat = 0, delta_lat = 0.1: D = -0.1 Td + 0.05 Tf
    _feed(tuner, image=40, image_tail=10, latent=45, latent_tail=5)
    assert tuner.due() and tuner.gradient() < 0
    assert tuner.step() == pytest.approx(0.51)          # image tier worth more: alpha up
    for _ in range(6):
        tuner.observe_fetch(400.0)                     # the object store slows down
    _feed(tuner, image=40, image_tail=10, latent=45, latent_tail=5)
    assert tuner.gradient() > 0
    assert tuner.step() == pytest.approx(0.50)          # broaden coverage: alpha down


def test_faster_decodes_favour_the_latent_tier():
    # the serving workers feed measured decode latencies (issue 9): cheap decodes make
    # coverage (latents) worth more than image hits
    cfg = TunerConfig(window=100, step=0.01, ewma_weight=0.5, t_decode_ms=40.0, t_fetch_ms=40.0,
                      gradient="per_byte")
    tuner = MarginalHitTuner(cfg)
    _feed(tuner, image=40, image_tail=10, latent=45, latent_tail=5)
    assert tuner.gradient() < 0                         # D = -0.1 Td + 0.05 Tf
    for _ in range(8):
        tuner.observe_decode(1.0)
    assert tuner.t_decode == pytest.approx(1.0, abs=0.2) and tuner.gradient() > 0


def test_alpha_is_clamped():
    tuner = MarginalHitTuner(TunerConfig(window=10, step=0.2, alpha_max=0.9, gradient="per_byte"))
    for _ in range(5):
        _feed(tuner, image_tail=10)
        tuner.step()
    assert tuner.alpha == 0.9
    with pytest.raises(ConfigError):
        MarginalHitTuner(TunerConfig(alpha=0.99, alpha_max=0.9))


def test_stream_of_image_tail_hits_grows_the_image_tier():
    # image tier 1000 B (main 900, tail 100); a loop over 19 images of 50 B = 950 B
    # always hits the least recent object, which sits in the tail.
    tuner = MarginalHitTuner(TunerConfig(window=400, step=0.05, alpha=0.5, gradient="per_byte"))
    cache = DualFormatCache(2000, CacheConfig(promote_after=1, tail=0.1), tuner=tuner)
    keys = list(range(19))
    for k in keys:                                     # miss, then latent hit -> promote
        cache.lookup(k)
        cache.fill(k, b"l" * 10, b"i" * 50)
        cache.lookup(k)
        cache.fill(k, b"l" * 10, b"i" * 50)
    assert all(k in cache.image for k in keys)
    outcomes = [cache.lookup(keys[i % 19]) for i in range(400 - 2 * 19)]
    assert all(r.outcome == "image" and r.tail_hit for r in outcomes)
    cache.lookup(0)                                     # the window is full: one step
    assert tuner.alpha == pytest.approx(0.55)


def test_stream_of_latent_tail_hits_grows_the_latent_tier():
    # latent tier 1000 B (main 900, tail 100); a loop over 19 latents of 50 B; h is never reached
    tuner = MarginalHitTuner(TunerConfig(window=200, step=0.05, alpha=0.5, gradient="per_byte"))
    cache = DualFormatCache(2000, CacheConfig(promote_after=10**6, tail=0.1), tuner=tuner)
    for i in range(400):
        k = i % 19
        r = cache.lookup(k)
        if r.outcome != "image":
            cache.fill(k, b"l" * 50, b"i" * 200)
        if 19 <= i < 200:                                # until the first step
            assert r.outcome == "latent" and r.tail_hit
    assert tuner.history[0][0] > 0
    assert tuner.alpha == pytest.approx(0.45)
