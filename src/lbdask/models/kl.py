"""diffusers `AutoencoderKL` (SD 3.5, FLUX.1, SDXL VAEs) adapted to the pixels-in-[0,1] convention.

The latent is the posterior mode, so encoding is deterministic and re-encoding the same
image gives the same stored bytes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lbdask.errors import NotFoundError


class KLEncoderNet(nn.Module):
    """Pixels in [0, 1] -> raw VAE latents (posterior mode)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x * 2 - 1).latent_dist.mode()


class KLDecoderNet(nn.Module):
    """Raw VAE latents -> pixels roughly in [0, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.vae.decode(z).sample + 1) / 2


def local_vae_folder(folder: Path, subfolder: str | None) -> Path | None:
    """The folder holding `config.json`: `folder/subfolder` when present, else `folder`."""
    for candidate in ([folder / subfolder] if subfolder else []) + [folder]:
        if (candidate / "config.json").is_file():
            return candidate
    return None


def load_autoencoder_kl(folders: list[Path], hub_id: str | None, subfolder: str | None) -> nn.Module:
    """Load from the first local folder that has a VAE, else from the hub; NotFoundError otherwise."""
    from diffusers import AutoencoderKL

    for folder in folders:
        found = local_vae_folder(folder, subfolder)
        if found is not None:
            return AutoencoderKL.from_pretrained(found)
    tried = [str(f) for f in folders]
    if hub_id is None:
        raise NotFoundError(
            f"no diffusers AutoencoderKL (config.json) in {', '.join(tried) or '(no folder)'}; "
            "pass --weights DIR pointing at a saved VAE folder"
        )
    try:
        return AutoencoderKL.from_pretrained(hub_id, subfolder=subfolder)
    except Exception as exc:  # hub and filesystem errors come in many types; all mean "not found"
        where = f"{hub_id}" + (f" (subfolder {subfolder})" if subfolder else "")
        tried.append(f"hub {where}")
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotFoundError(
            f"cannot load VAE from {', '.join(tried)}: {first_line}; download it on a machine with hub "
            "access and pass --weights DIR (the folder with config.json and the weights)"
        ) from None


def downsample_of(vae: nn.Module) -> int:
    """Spatial downsampling factor of an AutoencoderKL: one halving per block after the first."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def network_config(vae: nn.Module) -> dict:
    """The public (architecture and scaling) part of the VAE config, for the fingerprint."""
    return {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
