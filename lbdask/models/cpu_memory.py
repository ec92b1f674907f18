"""glibc malloc settings for a process that runs a model on the CPU.

A VAE's activations are tens to hundreds of MB per tensor. By default glibc serves each
with a fresh mmap and unmaps it when freed, so every forward pass page-faults its whole
working set again: on a 1024 px image TAEF2 spent as long in the kernel as in its own
code. Keeping freed memory in one heap (no mmap, no trimming, one arena so that worker
threads share it) made CPU encode and decode of 512-1024 px images 1.8-3.1x faster; the
price is a resident set that stays near its peak (docs/benchmarks.md). Configured in
`configs/cpu_memory.yaml`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass

from ..config import load_config

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: mallopt takes a C int: the largest trim threshold it accepts
MAX_TRIM_THRESHOLD_MB = (2**31 - 1) >> 20


@dataclass(frozen=True)
class CpuMemorySettings:
    """`configs/cpu_memory.yaml`."""

    retain_freed_memory: bool = True
    trim_threshold_mb: int = 1024

    def validate(self) -> None:
        if not 0 <= self.trim_threshold_mb <= MAX_TRIM_THRESHOLD_MB:
            raise ValueError(f"trim_threshold_mb must be between 0 and {MAX_TRIM_THRESHOLD_MB}")


_applied: bool | None = None  # once per process: None = not tried yet


def malloc_environ() -> dict[str, str]:
    """The same settings as glibc environment variables, for worker processes lbdask starts.

    Set before a process starts they also reach the threads that allocated before the
    model was loaded (a thread keeps the malloc arena it first used).
    """
    settings = load_config("cpu_memory", CpuMemorySettings)
    if not settings.retain_freed_memory:
        return {}
    return {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
            "MALLOC_TRIM_THRESHOLD_": str(settings.trim_threshold_mb << 20)}


def retain_freed_memory() -> bool:
    """Apply `configs/cpu_memory.yaml` to this process once; True when glibc took the settings.

    False when turned off in the config or when the C library is not glibc (musl, macOS):
    then nothing changes.
    """
    global _applied
    if _applied is None:
        _applied = _apply(load_config("cpu_memory", CpuMemorySettings))
    return _applied


def _apply(settings: CpuMemorySettings) -> bool:
    if not settings.retain_freed_memory:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("lbdask: not glibc, malloc settings left as they are")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = (mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, settings.trim_threshold_mb << 20) == 1
          and mallopt(M_ARENA_MAX, 1) == 1)
    log.info("lbdask: CPU model memory: freed tensors %s", "kept in the heap" if ok else "returned (mallopt refused)")
    return ok
