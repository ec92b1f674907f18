"""PSNR of 8-bit images: the same number as the float64 formula, in bounded memory."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lbdask.image import quality
from lbdask.image.quality import psnr


def _float64_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


@settings(max_examples=50, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)), st.integers(0, 2**32 - 1), st.integers(1, 64))
def test_psnr_of_uint8_images_equals_the_float64_formula(shape, seed, step):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (*shape[1:], 3), dtype=np.uint8)
    b = rng.integers(0, 256, a.shape, dtype=np.uint8) if seed % 3 else a.copy()
    old, quality._STEP = quality._STEP, step  # several steps per image
    try:
        assert psnr(a, b) == _float64_psnr(a, b)
    finally:
        quality._STEP = old


def test_psnr_of_a_large_image_allocates_a_bounded_amount():
    """A 12 MP pair: float64 copies would take ~600 MB; the stepped sum ~70 MB."""
    a = np.zeros((3000, 4000, 3), np.uint8)
    b = np.full_like(a, 3)
    tracemalloc.start()
    try:
        value = psnr(a, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value == _float64_psnr(a[:10], b[:10])
    assert peak < 100 * 2**20, peak
