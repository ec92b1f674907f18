"""glibc malloc settings for a process that runs a model on the CPU.

A VAE's activations are tens to hundreds of MB per tensor. By default glibc serves each
with a fresh mmap and unmaps it when freed, so every forward pass page-faults its whole
working set again: on a 1024 px image TAEF2 spent as long in the kernel as in its own
code. Keeping freed memory in one heap (no mmap, no trimming, one arena so that worker
threads share it) made CPU encode and decode of 512-1024 px images 1.8-3.1x faster; the
price is a resident set that stays near its peak (docs/benchmarks.md). A Dask worker's
heap also fragments (PNG decodes and task results interleave with the model's tensors in
the one arena) and its peak grew image after image, to 8-10 GiB over the corpus. So after
each model pass the heap's free pages go back once they exceed `release_above_mb`
(`release_freed_memory`): the next pass faults its pages in once, not once per tensor as
with an mmap each. Configured in `configs/cpu_memory.yaml`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass

from lbdask.config import load_config

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
    release_above_mb: int | None = 256

    def validate(self) -> None:
        if not 0 <= self.trim_threshold_mb <= MAX_TRIM_THRESHOLD_MB:
            raise ValueError(f"trim_threshold_mb must be between 0 and {MAX_TRIM_THRESHOLD_MB}")
        if self.release_above_mb is not None and self.release_above_mb < 0:
            raise ValueError(f"release_above_mb must be at least 0, or null to keep every freed page, "
                             f"not {self.release_above_mb}")


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_applied: bool | None = None  # once per process: None = not tried yet
_release_above: int | None = None  # bytes; set with _applied


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
    global _applied, _release_above
    if _applied is None:
        settings = load_config("cpu_memory", CpuMemorySettings)
        _applied = _apply(settings)
        if settings.release_above_mb is not None:
            _release_above = settings.release_above_mb << 20
    return _applied


@functools.cache
def _glibc_with_mallinfo2() -> ctypes.CDLL | None:
    """This process's C library when it reports its heap (`mallinfo2`, glibc >= 2.33)."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    return libc


def heap_info() -> MallInfo2 | None:
    """glibc's own accounting of this process's heap (None: not glibc >= 2.33)."""
    libc = _glibc_with_mallinfo2()
    return None if libc is None else libc.mallinfo2()


def release_freed_memory() -> int:
    """After a model pass: when the heap this process keeps holds more than
    `release_above_mb` free, give its free pages back to the OS (`malloc_trim`).

    Returns the free bytes the heap held (0 when the settings are not in effect, or when
    glibc lacks `mallinfo2`). Safe from any thread: glibc locks the arena.
    """
    if not _applied or _release_above is None:
        return 0
    info = heap_info()
    if info is None:
        return 0
    if info.fordblks > _release_above:
        _glibc_with_mallinfo2().malloc_trim(0)
    return info.fordblks


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
