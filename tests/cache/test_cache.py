"""The dual-format cache: cascading lookup, promotion, byte accounting, policies, threads."""
from __future__ import annotations

import random
import threading

import pytest

from lbdask.cache import CacheConfig, DualFormatCache, LRUTier, S3FIFOTier
from lbdask.errors import ConfigError


def _fill(cache, key, lat=10, img=50):
    cache.fill(key, b"L" * lat, b"I" * img)


def _check_invariants(cache: DualFormatCache) -> None:
    for tier in (cache.image, cache.latent):
        entries = list(tier._tail.items())
        if isinstance(tier, LRUTier):
            entries += list(tier._main.items())
        else:
            entries += list(tier._small.items()) + list(tier._mainq.items())
        assert sum(e.size for _, e in entries) == tier.used
        assert tier.used <= tier.capacity
    in_image = set(cache.image._tail) | set(getattr(cache.image, "_main", {})) | set(getattr(cache.image, "_small", {})) | set(getattr(cache.image, "_mainq", {}))
    in_latent = set(cache.latent._tail) | set(getattr(cache.latent, "_main", {})) | set(getattr(cache.latent, "_small", {})) | set(getattr(cache.latent, "_mainq", {}))
    assert not in_image & in_latent, "an object lives in both tiers"


@pytest.mark.parametrize("policy", ["lru", "s3fifo"])
def test_cascade_and_promotion_after_h_latent_hits(policy):
    cache = DualFormatCache(10_000, CacheConfig(policy=policy, promote_after=3), alpha=0.5)
    assert cache.lookup("a").outcome == "miss"
    _fill(cache, "a")
    assert "a" in cache.latent and "a" not in cache.image
    for _ in range(2):
        r = cache.lookup("a")
        assert (r.outcome, r.value) == ("latent", b"L" * 10)
        _fill(cache, "a")
        assert "a" in cache.latent
    assert cache.lookup("a").outcome == "latent"    # third latent hit: promotion on fill
    _fill(cache, "a")
    assert "a" in cache.image and "a" not in cache.latent
    r = cache.lookup("a")
    assert (r.outcome, r.value) == ("image", b"I" * 50)
    stats = cache.stats()
    assert (stats["image_lookups"], stats["latent_lookups"], stats["miss_lookups"]) == (1, 3, 1)
    assert stats["image_bytes"] == 50 and stats["latent_bytes"] == 0


def test_single_format_extremes():
    img_only = DualFormatCache(1000, alpha=1.0)
    img_only.lookup("x")
    _fill(img_only, "x")
    assert img_only.lookup("x").outcome == "image"       # no latent tier: the image is kept
    lat_only = DualFormatCache(1000, CacheConfig(promote_after=1), alpha=0.0)
    lat_only.lookup("x")
    _fill(lat_only, "x")
    for _ in range(3):
        assert lat_only.lookup("x").outcome == "latent"   # no image tier: never promoted
        _fill(lat_only, "x")


def test_lru_tail_hits_and_eviction_order():
    tier = LRUTier(100, tail_fraction=0.2)     # main 80, tail 20
    from lbdask.cache.tiers import Entry
    for k in "abcde":                          # 5 x 20 bytes: a lands in the tail
        tier.insert(k, Entry(k, 20))
    assert tier.get("e") == (tier.peek("e"), False)
    entry, tail = tier.get("a")
    assert tail and entry.value == "a"         # a was in the tail; now most recent again
    assert tier.get("b")[1]                    # b had been pushed to the tail by a's return
    tier.insert("f", Entry("f", 20))           # evicts the least recent: c
    assert "c" not in tier and all(k in tier for k in "abdef")
    assert tier.used == 100


def test_s3fifo_resists_a_scan_that_flushes_lru():
    from lbdask.cache.tiers import Entry
    lru, s3 = LRUTier(1000, 0.1), S3FIFOTier(1000, 0.1)
    for tier in (lru, s3):
        tier.insert("hot", Entry("hot", 10))
        tier.get("hot")                        # one hit, then a scan of one-hit wonders
        for i in range(300):                   # 3x the capacity
            tier.insert(i, Entry(i, 10))
    assert "hot" in s3
    assert "hot" not in lru


@pytest.mark.parametrize("policy", ["lru", "s3fifo"])
def test_resize_evicts_overflow_immediately(policy):
    cache = DualFormatCache(5000, CacheConfig(policy=policy, promote_after=1), alpha=0.8)
    for k in range(200):
        cache.lookup(k)
        _fill(cache, k, lat=10, img=40)
        cache.lookup(k)
        _fill(cache, k, lat=10, img=40)
    assert cache.image.used > 1000
    cache.set_alpha(0.1)
    assert cache.image.used <= 500 and cache.latent.used <= 4500
    cache.resize(1000)
    assert cache.used <= 1000
    _check_invariants(cache)


@pytest.mark.parametrize("policy", ["lru", "s3fifo"])
def test_threads_keep_accounting_exact(policy):
    cache = DualFormatCache(20_000, CacheConfig(policy=policy, promote_after=2), alpha=0.5)

    def work(seed):
        rnd = random.Random(seed)
        for _ in range(3000):
            k = int(rnd.paretovariate(1.0)) % 500
            if cache.lookup(k).outcome != "image":
                cache.fill(k, b"l" * rnd.randint(5, 30), b"i" * rnd.randint(50, 150))
            if rnd.random() < 0.01:
                cache.set_alpha(rnd.random())

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_invariants(cache)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        DualFormatCache(100, CacheConfig(policy="fifo"))
    with pytest.raises(ConfigError):
        DualFormatCache(100, CacheConfig(tail=1.5))
    with pytest.raises(ConfigError):
        DualFormatCache(100, alpha=2.0)


def test_from_settings_follows_the_config_file():
    from lbdask.cache import load_cache_settings

    settings = load_cache_settings()
    adaptive = DualFormatCache.from_settings(10_000, settings)
    assert adaptive.tuner is not None and adaptive.alpha == settings.tuner.alpha
    assert adaptive.tuner.config.window == settings.tuner.window
    settings.cache.adaptive = False
    settings.tuner.alpha = 0.25
    static = DualFormatCache.from_settings(10_000, settings)
    assert static.tuner is None and static.image.capacity == 2_500


def test_config_file_errors_are_config_errors(tmp_path):
    from lbdask.cache import load_cache_settings

    bad = tmp_path / "cache.yaml"
    bad.write_text("cache:\n  tail: 2.0\n")
    with pytest.raises(ConfigError, match="tail"):
        load_cache_settings(str(bad))
    bad.write_text("tuner:\n  gradient: steepest\n")
    with pytest.raises(ConfigError, match="gradient"):
        load_cache_settings(str(bad))
