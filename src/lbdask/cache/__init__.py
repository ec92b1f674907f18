"""Dual-format (image + latent) cache with LRU or S3-FIFO tiers, used inside Dask workers."""
from lbdask.cache.dual import DualFormatCache, HitTier, Lookup
from lbdask.cache.settings import CacheConfig, CacheSettings, load_cache_settings
from lbdask.cache.tiers import POLICIES, LRUTier, S3FIFOTier, SegmentedTier

__all__ = ["DualFormatCache", "HitTier", "Lookup", "CacheConfig", "CacheSettings", "load_cache_settings",
           "POLICIES", "LRUTier", "S3FIFOTier", "SegmentedTier"]
