"""Tiled application of an encoder or decoder to images too large for one pass.

Tiling bounds a model call's memory by the tile, not the image (TAEF2 holds ~1.5 KB of
activations per pixel of a call, docs/benchmarks.md). Tiles overlap and are blended with
linear ramps so seams do not show; tiles along an axis have one size, just large enough
to cover it with the overlap, so little work is repeated; tile origins stay on the
downsampling grid so every tile maps to whole latent pixels.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def tile_grid(length: int, tile: int, overlap: int, align: int = 1) -> tuple[list[int], int]:
    """Origins and common size of the fewest tiles of at most `tile` covering `length`,
    neighbours overlapping by at least `overlap`; all four are multiples of `align`.

    The first tile starts at 0 and the last ends at `length`; equal sizes spread the
    overlap evenly instead of repeating most of a tile at the far edge.
    """
    if length <= tile:
        return [0], length
    n_len, n_tile, n_over = length // align, tile // align, overlap // align
    n = -(-(n_len - n_over) // (n_tile - n_over))
    size = -(-(n_len + (n - 1) * n_over) // n)   # <= n_tile by the choice of n
    span = n_len - size
    return [(i * span // (n - 1)) * align for i in range(n)], size * align


def ramp_weights(size: int, ramp: int, lead: bool, trail: bool, like: torch.Tensor) -> torch.Tensor:
    """1-D blend weights: linear ramps of `ramp` samples on the sides that meet another tile."""
    w = torch.ones(size, dtype=like.dtype, device=like.device)
    if ramp > 0:
        up = (torch.arange(ramp, dtype=like.dtype, device=like.device) + 0.5) / ramp
        if lead:
            w[:ramp] = torch.minimum(w[:ramp], up)
        if trail:
            w[size - ramp:] = torch.minimum(w[size - ramp:], up.flip(0))
    return w


def apply_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    up: int = 1,
    down: int = 1,
) -> torch.Tensor:
    """Apply `fn` (output size = input size * up / down) to overlapping tiles of `x` and blend.

    `tile` and `overlap` are in input units; H and W of `x` and both sizes must be multiples
    of `down`. Differentiable: gradients flow through every tile.
    """
    n, _, h, w = x.shape
    (ys, tile_h), (xs, tile_w) = tile_grid(h, tile, overlap, down), tile_grid(w, tile, overlap, down)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    ramp = overlap * up // down
    out = weight = None
    for y0 in ys:
        for x0 in xs:
            part = fn(x[:, :, y0:y0 + tile_h, x0:x0 + tile_w])
            if out is None:
                out = part.new_zeros((n, part.shape[1], h * up // down, w * up // down))
                weight = part.new_zeros((1, 1, out.shape[2], out.shape[3]))
            th, tw = part.shape[2], part.shape[3]
            wy = ramp_weights(th, ramp, y0 > 0, y0 + tile_h < h, part)
            wx = ramp_weights(tw, ramp, x0 > 0, x0 + tile_w < w, part)
            mask = (wy[:, None] * wx[None, :])[None, None]
            oy, ox = y0 * up // down, x0 * up // down
            out[:, :, oy:oy + th, ox:ox + tw] += part * mask
            weight[:, :, oy:oy + th, ox:ox + tw] += mask
    return out / weight
