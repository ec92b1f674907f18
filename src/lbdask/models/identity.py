"""Stable identities for a model and for the hardware that ran it.

The archive stores the model fingerprint with every latent so a later read with other
weights fails clearly, and the device class so numerical drift can be traced to hardware.
"""
from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from typing import Any

import torch


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of every tensor, in name order.

    Independent of file format and load order, so the same weights hash alike in every process.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def canonical_json(config: Mapping[str, Any]) -> str:
    """JSON with sorted keys and no whitespace: one text per configuration."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(config: Mapping[str, Any], digest: str) -> str:
    """sha256 hex of the canonical latent-space config JSON followed by the weights digest."""
    return hashlib.sha256((canonical_json(config) + "\n" + digest).encode()).hexdigest()


def torch_version() -> str:
    """`major.minor` of the running torch, e.g. `2.13`."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def device_class(device: str | torch.device = "cpu", runtime: str = "torch", precision: str = "fp32",
                 threads: int | None = None) -> str:
    """A short hardware/runtime/precision class such as `cpu-x86_64-torch2.13` (fp32 torch),
    `cpu-x86_64-torch2.13-bf16`, `cpu-x86_64-openvino2026.4-fp32-avx2-t2` or `cuda-sm90-torch2.13-fp16`.

    Decodes are bit-exact only within one class; fp32 torch keeps the bare name that
    archives written before the runtime and precision were recorded carry. OpenVINO's CPU
    kernels give other bits with another instruction set or another number of `threads` per
    inference (measured: TAEF2 on 1 and 2 threads), so its class names both.
    """
    device = torch.device(device)
    if runtime == "openvino":
        isa = torch.backends.cpu.get_cpu_capability().lower()
        tail = "" if threads is None else f"-t{threads}"
        return f"{device.type}-{platform.machine()}-openvino{openvino_version()}-{precision}-{isa}{tail}"
    suffix = "" if precision == "fp32" else f"-{precision}"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda-sm{major}{minor}-torch{torch_version()}{suffix}"
    return f"{device.type}-{platform.machine()}-torch{torch_version()}{suffix}"


def openvino_version() -> str:
    """`major.minor` of the installed OpenVINO, e.g. `2026.4`."""
    import openvino

    return ".".join(openvino.__version__.split(".")[:2])
