"""Crash injection into the access statistics' store writes (shared by its tests)."""
from lbdask.access import log as access_log

WRITES = ("put_atomic", "put_exclusive", "remove_quietly")


class Crash(BaseException):
    """A kill: raised instead of the k-th store mutation (each mutation is atomic itself)."""


def crashing_at(monkeypatch, k):
    """Make the k-th store write (0-based; a deletion of several objects counts one write per
    object) raise Crash; returns the list of writes done so far."""
    done = []

    def wrap(name, real):
        def wrapper(loc, target, *rest):
            for one in (list(target) if name == "remove_quietly" else [target]):
                if len(done) == k:
                    raise Crash
                done.append((name, one))
                result = real(loc, [one] if name == "remove_quietly" else one, *rest)
            return result if name != "remove_quietly" else None
        return wrapper

    for name in WRITES:
        monkeypatch.setattr(access_log, name, wrap(name, getattr(access_log, name)))
    return done
