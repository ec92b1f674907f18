"""The discrete-event clock of the cluster simulator and its FIFO GPU servers.

Time is in milliseconds of simulated time. Events are (time, seq, kind, payload) tuples
on a heap; `seq` keeps events of equal time in scheduling order, so a run is
deterministic. A GPU is a first-come-first-served server: a decode that reaches it at
time x starts at max(x, when the GPU is free) (Lindley's recursion), so a GPU needs no
events of its own, only its arrivals processed in time order.
"""
from __future__ import annotations

import heapq
import itertools
import math
from typing import Any


class EventQueue:
    """Pending events in time order."""

    __slots__ = ("heap", "_seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()

    def push(self, time: float, kind: int, payload: Any) -> None:
        heapq.heappush(self.heap, (time, next(self._seq), kind, payload))

    def pop(self) -> tuple[float, int, int, Any]:
        return heapq.heappop(self.heap)

    def next_time(self) -> float:
        """Time of the earliest pending event (inf when none)."""
        return self.heap[0][0] if self.heap else math.inf

    def __len__(self) -> int:
        return len(self.heap)


class GpuPool:
    """FIFO decode servers grouped by node: outstanding work, free time, busy time per GPU.

    `outstanding[g]` counts decodes dispatched to GPU g and not finished (what a router
    that counts its own requests knows); a node's queue depth is the smallest
    outstanding count among its GPUs (paper 4.4: the least-loaded GPU of the node).
    """

    def __init__(self, nodes: int, gpus_per_node: int) -> None:
        self.per_node = gpus_per_node
        n = nodes * gpus_per_node
        self.outstanding = [0] * n
        self.free_at = [0.0] * n
        self.busy_ms = [0.0] * n
        self.decodes = [0] * n

    def least_loaded(self, node: int) -> int:
        """The GPU of `node` with the fewest outstanding decodes (lowest index on ties)."""
        base = node * self.per_node
        if self.per_node == 1:
            return base
        out = self.outstanding
        return min(range(base, base + self.per_node), key=out.__getitem__)

    def node_depth(self, node: int) -> int:
        base = node * self.per_node
        return min(self.outstanding[base:base + self.per_node])

    def start(self, gpu: int, arrive: float, service: float) -> tuple[float, float]:
        """A decode reaches `gpu` at `arrive`: (begin, end) under FIFO service."""
        begin = self.free_at[gpu]
        if begin < arrive:
            begin = arrive
        end = begin + service
        self.free_at[gpu] = end
        self.busy_ms[gpu] += service
        self.decodes[gpu] += 1
        return begin, end
