"""`load_model(name_or_path)`: registry name, local VAE folder or hub id -> ready `LatentModel`."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lbdask.errors import ConfigError, NotFoundError
from lbdask.models.cpu_memory import retain_freed_memory
from lbdask.models.decode_engines import attach_decode_engine
from lbdask.models.identity import fingerprint, weights_digest
from lbdask.models.kl import KLDecoderNet, KLEncoderNet, downsample_of, load_autoencoder_kl, network_config
from lbdask.models.latent_model import LatentModel, ScaledDecoder, ScaledEncoder
from lbdask.models.precision import Inference, choose_inference, cpu_has_native_bf16, openvino_available
from lbdask.models.registry import (
    ModelSpec,
    candidate_folders,
    find_tae_weights,
    load_registry,
    spec_for_path,
    with_weights,
)
from lbdask.models.runtimes import attach_openvino
from lbdask.models.tae import tae_decoder, tae_encoder

log = logging.getLogger("lbdask.models")

DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"bad device {device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, spec: ModelSpec) -> torch.dtype:
    """fp32 on CPU, the model's `cuda_dtype` on CUDA, unless a dtype is asked for."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        dtype = spec.cuda_dtype if device.type == "cuda" else "fp32"
    if dtype not in DTYPES:
        raise ConfigError(f"bad dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_tae(name: str, spec: ModelSpec, explicit: bool) -> tuple[Any, Any, dict, str]:
    """Build a tae encoder/decoder and load its weights strictly."""
    enc_path, dec_path = find_tae_weights(name, spec, explicit)
    encoder, decoder = tae_encoder(spec.latent_channels), tae_decoder(spec.latent_channels)
    states = {}
    for prefix, net, path in (("encoder", encoder, enc_path), ("decoder", decoder, dec_path)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a {name} {prefix} state_dict: {str(exc).splitlines()[0]}") from None
        states.update({f"{prefix}.{k}": v for k, v in state.items()})
    return encoder, decoder, {"family": "tae", "width": 64}, weights_digest(states)


def load_kl(name: str, spec: ModelSpec, explicit: bool) -> tuple[Any, Any, dict, str, ModelSpec]:
    """Load an AutoencoderKL and complete the spec from its config (channels, scaling, shift)."""
    source = spec.weights
    folders = candidate_folders(source, explicit)
    hub_id = None if explicit else source.hub_id
    vae = load_autoencoder_kl(folders, hub_id, source.subfolder)
    cfg = vae.config
    ds = downsample_of(vae)
    if spec.latent_channels is not None:  # a registry entry: its geometry must match the VAE
        if spec.latent_channels != cfg.latent_channels:
            raise ConfigError(f"model '{name}': VAE has {cfg.latent_channels} latent channels, registry says {spec.latent_channels}")
        if spec.downsample != ds:
            raise ConfigError(f"model '{name}': VAE downsamples by {ds}, registry says {spec.downsample}")
    scale = spec.scaling_factor if spec.scaling_factor is not None else float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
    shift = spec.shift_factor if spec.shift_factor is not None else float(getattr(cfg, "shift_factor", 0.0) or 0.0)
    spec = dataclasses.replace(
        spec,
        latent_channels=cfg.latent_channels,
        downsample=ds,
        pad_multiple=math.lcm(spec.pad_multiple, ds),
        tile_size=math.lcm(spec.tile_size, ds),
        tile_overlap=-(-spec.tile_overlap // ds) * ds,
        scaling_factor=scale,
        shift_factor=shift,
    )
    return KLEncoderNet(vae), KLDecoderNet(vae), {"family": "diffusers-kl", **network_config(vae)}, weights_digest(vae.state_dict()), spec


def _attach_openvino(model: LatentModel, explicit: bool) -> None:
    """Run `model` on OpenVINO; if conversion fails, an error when asked for, else torch with the reason."""
    wanted = model.inference
    try:
        ran, threads = attach_openvino(model, wanted.precision)
    except Exception as exc:  # noqa: BLE001 - any converter failure: say which, keep torch under auto
        why = f"OpenVINO could not convert {model.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if explicit:
            raise ConfigError(why) from None
        model.inference = Inference("torch", "fp32", f"{wanted.reason}; {why}")
        return
    reason = wanted.reason if ran == wanted.precision else f"{wanted.reason}; OpenVINO runs {wanted.precision} as {ran} on this CPU"
    model.inference = Inference("openvino", ran, reason, threads)


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, ModelSpec]:
    """Registry entry for a name; otherwise a diffusers spec for a local folder or hub id."""
    text = os.fspath(name_or_path)
    registry = load_registry().models
    if text in registry:
        return text, registry[text]
    path = Path(text).expanduser()
    if path.exists():
        spec = spec_for_path()
        return path.name or text, dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, local=str(path.resolve())))
    if "/" in text and not text.startswith((".", "/")):
        spec = spec_for_path()
        return text, dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, hub_id=text))
    raise NotFoundError(
        f"unknown model '{text}': not a name in configs/models.yaml ({', '.join(sorted(registry))}), "
        "an existing folder or a hub id (owner/name)"
    )


@dataclass(frozen=True)
class Networks:
    """A model's loaded encoder and decoder networks and what identifies them."""

    encoder: Any
    decoder: Any
    spec: ModelSpec  # completed from the VAE's own config for diffusers-kl
    config: dict  # the latent-space config that, with `digest`, makes the fingerprint
    digest: str
    scale: float
    shift: float


def load_networks(name: str, spec: ModelSpec, explicit: bool) -> Networks:
    """Build the networks of `spec.architecture` with their weights, and their fingerprint config."""
    if spec.architecture == "tae":
        enc, dec, net_cfg, digest = load_tae(name, spec, explicit)
    else:
        enc, dec, net_cfg, digest, spec = load_kl(name, spec, explicit)
    scale = 1.0 if spec.scaling_factor is None else spec.scaling_factor
    shift = 0.0 if spec.shift_factor is None else spec.shift_factor
    config = {
        # "backend" is the stored name of the architecture: it is part of every fingerprint and
        # of the model info an archive records, so renaming it would orphan existing latents
        "backend": spec.architecture,
        "latent_channels": spec.latent_channels,
        "downsample": spec.downsample,
        "scaling_factor": scale,
        "shift_factor": shift,
        "network": net_cfg,
    }
    return Networks(enc, dec, spec, config, digest, scale, shift)


def plan_inference(spec: ModelSpec, device: torch.device, dtype: str | torch.dtype | None,
                   precision: str | None, runtime: str | None) -> tuple[Inference | None, str | torch.dtype | None]:
    """The runtime and precision to run (None when an explicit `dtype` asks for plain torch) and the weights' dtype."""
    if dtype is not None:
        return None, dtype
    inference = choose_inference(precision or spec.precision, runtime or spec.runtime, device.type, spec.cuda_dtype,
                                 cpu_has_native_bf16(), openvino_available())
    # torch on CUDA casts the weights; the CPU keeps fp32 weights (autocast or OpenVINO)
    return inference, inference.precision if device.type == "cuda" else "fp32"


def attach_runners(model: LatentModel, explicit_openvino: bool, decode_engine: str) -> None:
    """Install the chosen runtime's runners: OpenVINO's, or torch's with its decode engine."""
    if model.inference.runtime == "openvino":
        _attach_openvino(model, explicit=explicit_openvino)
    if model.inference.runtime == "torch":  # also after an OpenVINO conversion fell back to torch
        attach_decode_engine(model, decode_engine)


def load_model(
    name_or_path: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    decode_engine: str | None = None,
    precision: str | None = None,
    runtime: str | None = None,
) -> LatentModel:
    """Load a VAE as a frozen `LatentModel`.

    `weights` overrides where the weights are read from (offline use); `decode_engine`
    overrides the registry's `auto|eager|compile|tensorrt` choice for the numpy decode path
    on CUDA; `precision` (fp32|bf16|fp16|auto) and `runtime` (torch|openvino|auto) override
    the registry's choice of what runs the numpy encode/decode path (lbdask.models.precision).
    An explicit `dtype` runs torch in that dtype and wins over both.
    """
    name, spec = resolve_model(name_or_path)
    spec = with_weights(spec, weights)
    explicit = weights is not None
    nets = load_networks(name, spec, explicit)
    dev = resolve_device(device)
    if dev.type == "cpu":
        retain_freed_memory()
    inference, dtype = plan_inference(nets.spec, dev, dtype, precision, runtime)
    model = LatentModel(
        name=name,
        spec=nets.spec,
        encoder=ScaledEncoder(nets.encoder, nets.scale, nets.shift),
        decoder=ScaledDecoder(nets.decoder, nets.scale, nets.shift),
        fingerprint=fingerprint(nets.config, nets.digest),
        config=nets.config,
        device=dev,
        dtype=resolve_dtype(dtype, dev, nets.spec),
        inference=inference,
    )
    attach_runners(model, explicit_openvino=(runtime or nets.spec.runtime) == "openvino",
                   decode_engine=decode_engine or nets.spec.decode_engine)
    log.info("inference for %s on %s: %s (%s)", model.name, dev, model.inference.label, model.inference.reason)
    return model
