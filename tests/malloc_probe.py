"""glibc's own accounting (mallinfo2) around one large tensor: was it an mmap of its own,
and did its memory stay in the heap once freed? (configs/cpu_memory.yaml)"""
from __future__ import annotations

import ctypes

SIZE = 256 << 20
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def has_mallinfo2() -> bool:
    return hasattr(ctypes.CDLL(None), "mallinfo2")


def large_tensor_probe() -> dict[str, int]:
    """Allocate, touch and free a SIZE-byte tensor; mmapped bytes while it lived, free heap bytes after."""
    import torch

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    tensor = torch.empty(SIZE, dtype=torch.uint8)
    tensor.fill_(1)
    mmapped = libc.mallinfo2().hblkhd
    del tensor
    return {"mmapped_during": mmapped, "free_in_heap_after": libc.mallinfo2().fordblks}


def resident_bytes() -> int:
    """This process's resident set (/proc/self/statm)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
