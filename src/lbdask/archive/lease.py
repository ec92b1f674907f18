"""A lease with expiry on an archive: one migration (or repair) writes into a DEST at a time.

Lease objects are `lease/<n>.json`, created exclusively (the same compare-and-swap as
manifests); the highest n is the current lease. A job takes the lease when there is none or
the current one has expired, by creating n+1; it renews its own object every third of the
time to live and deletes it when done. A killed driver stops renewing, so its lease expires
after `ttl` seconds and the next run goes ahead (at once on the same machine, where the
holder's process id shows it is gone). Expiry compares wall clocks: machines
sharing a DEST must keep their clocks within a small fraction of the time to live.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from lbdask.archive.objects import put_atomic, put_exclusive, remove_quietly
from lbdask.errors import LbdaskError
from lbdask.storage import Location

NAME = re.compile(r"^(\d{10})\.json$")
#: Seconds a lease lives without renewal: how long a killed driver blocks the next run.
LEASE_SECONDS = 60.0


class LeaseHeldError(LbdaskError):
    """Another job holds the archive's lease."""


@dataclass
class LeaseInfo:
    holder: str  # "<what> on <host> pid <pid>"
    host: str
    pid: int
    acquired: float
    expires: float

    def live(self, now: float) -> bool:
        """Unexpired, and when held on this machine, by a process that still runs."""
        if self.expires <= now:
            return False
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False  # killed on this machine: no need to wait for the expiry
        except PermissionError:
            return True
        return True


def _dir(loc: Location) -> str:
    return loc.path("lease")


def _numbers(loc: Location) -> list[int]:
    loc.fs.invalidate_cache(_dir(loc))
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in loc.fs.ls(_dir(loc), detail=False)]
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(NAME.match, names) if m)


def _path(loc: Location, n: int) -> str:
    return loc.path("lease", f"{n:010d}.json")


def current(loc: Location) -> tuple[int, LeaseInfo | None]:
    """The highest lease number and its content (None when none or unreadable)."""
    numbers = _numbers(loc)
    if not numbers:
        return 0, None
    try:
        return numbers[-1], LeaseInfo(**json.loads(loc.fs.cat_file(_path(loc, numbers[-1]))))
    except (FileNotFoundError, ValueError, TypeError):
        return numbers[-1], None


@contextlib.contextmanager
def hold(loc: Location, what: str, ttl: float = LEASE_SECONDS) -> Iterator[LeaseInfo]:
    """Hold the lease of `loc` while the block runs; LeaseHeldError naming the holder if taken."""
    now = time.time()
    n, info = current(loc)
    if info is not None and info.live(now):
        raise LeaseHeldError(
            f"{loc.url} is in use by {info.holder} since {time.strftime('%H:%M:%S', time.localtime(info.acquired))}; "
            f"its lease expires in {info.expires - now:.0f} s unless renewed (a killed job's lease lapses by itself)")
    host, pid = socket.gethostname(), os.getpid()
    mine = LeaseInfo(f"{what} on {host} pid {pid}", host, pid, now, now + ttl)
    if not put_exclusive(loc, _path(loc, n + 1), json.dumps(asdict(mine)).encode()):
        _, other = current(loc)
        raise LeaseHeldError(f"{loc.url} was just taken by {other.holder if other else 'another job'}")
    remove_quietly(loc, [_path(loc, k) for k in _numbers(loc) if k <= n])
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            if _numbers(loc)[-1:] != [n + 1]:
                return  # taken over after we failed to renew in time: stop claiming it
            mine.expires = time.time() + ttl
            with contextlib.suppress(Exception):  # a failed renewal is retried at the next tick
                put_atomic(loc, _path(loc, n + 1), json.dumps(asdict(mine)).encode())

    thread = threading.Thread(target=renew, name="lbdask-lease", daemon=True)
    thread.start()
    try:
        yield mine
    finally:
        stop.set()
        thread.join()
        remove_quietly(loc, [_path(loc, n + 1)])
