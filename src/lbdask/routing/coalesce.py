"""Request coalescing: concurrent requests for one key share one piece of work.

Clock- and transport-agnostic so serving (threads, asyncio futures) and the
cluster simulator (events) use the same bookkeeping. The first caller for a key leads and
does the work; later callers join as waiters and are handed back by `finish`.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

W = TypeVar("W")


class Coalescer(Generic[W]):
    """In-flight keys and their waiters; thread-safe.

    `join(key, waiter)` returns True for the leader (nothing was in flight for `key`) and
    False for a waiter that was queued behind it; `finish(key)` ends the flight and returns
    the queued waiters, whom the leader then answers with its result (or error).
    """

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[W]] = {}
        self._lock = threading.Lock()
        self.coalesced = 0  # requests that joined a flight instead of starting one

    def join(self, key: Hashable, waiter: W) -> bool:
        with self._lock:
            queue = self._waiting.get(key)
            if queue is None:
                self._waiting[key] = []
                return True
            queue.append(waiter)
            self.coalesced += 1
            return False

    def finish(self, key: Hashable) -> list[W]:
        """End the flight of `key`; the waiters that joined it, in arrival order."""
        with self._lock:
            return self._waiting.pop(key, [])

    def in_flight(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._waiting

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
