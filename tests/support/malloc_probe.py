"""glibc's own accounting (mallinfo2) around one large tensor: was it an mmap of its own,
and did its memory stay in the heap once freed? (configs/cpu_memory.yaml)"""
from __future__ import annotations

from lbdask.models.cpu_memory import heap_info

SIZE = 256 << 20


def has_mallinfo2() -> bool:
    return heap_info() is not None


def large_tensor_probe() -> dict[str, int]:
    """Allocate, touch and free a SIZE-byte tensor; mmapped bytes while it lived, free heap bytes after."""
    import torch

    tensor = torch.empty(SIZE, dtype=torch.uint8)
    tensor.fill_(1)
    mmapped = heap_info().hblkhd
    del tensor
    return {"mmapped_during": mmapped, "free_in_heap_after": heap_info().fordblks}


def resident_bytes() -> int:
    """This process's resident set (/proc/self/statm)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
