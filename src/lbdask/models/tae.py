"""The tiny-autoencoder (TAE) family in plain torch, so trained `.pth` weights load offline.

Layer indices match the published `nn.Sequential` state_dict keys exactly (see
`../shared/models/taef2/README.md`); loading is strict so a wrong file fails loudly.
"""
from __future__ import annotations

import torch
from torch import nn


def conv(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with padding 1, the only spatial kernel the family uses."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of raw latents to about [-3, 3] before decoding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class GroupNormPool(nn.Sequential):
    """Global-context branch: GroupNorm over the whole image mixes image-wide statistics in."""

    def __init__(self, channels: int, hidden: int = 256, groups: int = 4):
        super().__init__(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.GroupNorm(groups, hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )


class Block(nn.Module):
    """Residual block of three 3x3 convs, optionally preceded by a GroupNorm pooling branch."""

    def __init__(self, channels: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(
            conv(channels, channels), nn.ReLU(), conv(channels, channels), nn.ReLU(), conv(channels, channels)
        )
        self.pool = GroupNormPool(channels) if pool else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.relu(self.conv(x) + x)


def tae_encoder(latent_channels: int, width: int = 64) -> nn.Sequential:
    """Encoder: RGB in [0, 1] (N,3,H,W) -> raw latents (N,C,H/8,W/8)."""
    return nn.Sequential(
        conv(3, width), Block(width),
        conv(width, width, stride=2, bias=False), Block(width), Block(width), Block(width),
        conv(width, width, stride=2, bias=False), Block(width), Block(width), Block(width),
        conv(width, width, stride=2, bias=False), Block(width, True), Block(width, True), Block(width, True),
        conv(width, latent_channels),
    )


def tae_decoder(latent_channels: int, width: int = 64) -> nn.Sequential:
    """Decoder: raw latents (N,C,h,w) -> RGB roughly in [0, 1] (N,3,8h,8w)."""
    return nn.Sequential(
        Clamp(), conv(latent_channels, width), nn.ReLU(),
        Block(width, True), Block(width, True), Block(width, True),
        nn.Upsample(scale_factor=2), conv(width, width, bias=False), Block(width), Block(width), Block(width),
        nn.Upsample(scale_factor=2), conv(width, width, bias=False), Block(width), Block(width), Block(width),
        nn.Upsample(scale_factor=2), conv(width, width, bias=False), Block(width),
        conv(width, 3),
    )
