"""Which runtime (torch or OpenVINO) and precision run a model's encode/decode here.

fp32 eager torch is the slow path on a CPU: bf16 halves the memory traffic where the CPU
has native bf16 instructions (AVX512-BF16, AMX), and OpenVINO's CPU plugin fuses TAEF2's
convolutions better than torch eager (docs/benchmarks.md). `auto` picks, once per process,
the fastest choice this machine runs natively; an explicit request that cannot run is a
one-line error, never a silent substitute. The choice is part of the device class
recorded with every decode hash, since another runtime or precision gives other pixels.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lbdask.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
RUNTIMES = ("torch", "openvino")


@dataclass(frozen=True)
class Inference:
    """The runtime and precision that run the numpy encode/decode path, and why."""

    runtime: str      # torch | openvino
    precision: str    # fp32 | bf16 | fp16 (what actually runs, after any hardware fallback)
    reason: str
    threads: int | None = None  # OpenVINO's threads per inference: they decide the decoded bits

    @property
    def label(self) -> str:
        """Short name for logs and tables, e.g. `openvino-bf16`."""
        return f"{self.runtime}-{self.precision}"

    def as_dict(self) -> dict[str, str | int]:
        """What a job records about its inference choice."""
        extra = {} if self.threads is None else {"threads": self.threads}
        return {"runtime": self.runtime, "precision": self.precision, "reason": self.reason, **extra}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 pays off.

    Without these instructions torch emulates bf16 and runs slower than fp32.
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch >= 2.3
    if any(getattr(torch.cpu, p, lambda: False)() for p in probes):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime (`pip install lbdask[openvino]`) is importable."""
    return importlib.util.find_spec("openvino") is not None


def choose_inference(precision: str, runtime: str, device_type: str, cuda_dtype: str,
                     native_bf16: bool, have_openvino: bool) -> Inference:
    """Resolve `precision` (fp32|bf16|fp16|auto) and `runtime` (torch|openvino|auto) for a device.

    auto precision: the model's `cuda_dtype` on CUDA, bf16 on a CPU with native bf16, else
    fp32. auto runtime: OpenVINO on the CPU when installed, else torch.
    """
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
    if runtime not in ("auto", *RUNTIMES):
        raise ConfigError(f"runtime {runtime!r} is not one of auto, {', '.join(RUNTIMES)}")
    why = []
    if device_type == "cuda":
        if runtime == "openvino":
            raise ConfigError("runtime openvino runs on the CPU only; use --runtime torch (or auto) with CUDA")
        chosen_runtime = "torch"
        if precision == "auto":
            precision = cuda_dtype
            why.append(f"precision auto: {cuda_dtype} on CUDA")
    else:
        if runtime == "openvino" and not have_openvino:
            raise ConfigError("runtime openvino requested but OpenVINO is not installed (pip install lbdask[openvino])")
        if runtime == "auto":
            chosen_runtime = "openvino" if have_openvino else "torch"
            why.append("runtime auto: " + ("OpenVINO installed" if have_openvino else "OpenVINO not installed"))
        else:
            chosen_runtime = runtime
        if precision == "auto":
            precision = "bf16" if native_bf16 else "fp32"
            why.append("precision auto: " + ("CPU has native bf16" if native_bf16 else "CPU has no native bf16"))
    return Inference(chosen_runtime, precision, "; ".join(why) or "requested")
