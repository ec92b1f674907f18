"""Image quality of a decode against its source: PSNR (SSIM is added beside it).

Quality, not metrics: in lbdask "metrics" are the Prometheus series of serving (docs/glossary.md).

Migration records the quality per image and the report aggregates them, so they work on the
uint8 pixel arrays both sides actually store.
"""
from __future__ import annotations

import math

import numpy as np

from lbdask.errors import InputError

#: Samples per step of the integer squared-error sum: bounds its temporaries (~48 MB)
#: where float64 copies of a whole 64 MP image would take ~4.6 GB.
_STEP = 1 << 22


def _integer(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2


def _squared_error_sum(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of squared differences of two integer images, exact (int64), in bounded steps.

    For 8-bit samples the float64 mean it replaces was exact too (every partial sum is an
    integer below 2**53 up to ~1e11 samples), so the PSNR is the same number.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    total = 0
    for i in range(0, a.size, _STEP):
        d = a[i:i + _STEP].astype(np.int64) - b[i:i + _STEP]
        total += int(np.dot(d, d))
    return float(total)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of two same-shaped images; inf when identical."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise InputError(f"PSNR needs images of the same shape, got {a.shape} and {b.shape}")
    mse = _squared_error_sum(a, b) / a.size if a.size and _integer(a) and _integer(b) else \
        float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _gaussian_window(size: int, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (h, w, c) by the 1-D window g along both axes."""
    k = len(g)
    rows = sum(g[i] * x[i : x.shape[0] - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004), averaged over channels.

    PSNR weighs every pixel error alike; SSIM says whether structure (edges, texture)
    survived. 11x11 Gaussian window (sigma 1.5, smaller for tiny images), K1 0.01,
    K2 0.03, over the window positions that fit inside the image.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"SSIM needs images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    g = _gaussian_window(min(11, a.shape[0], a.shape[1]))
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())
