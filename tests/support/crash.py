"""Crash injection: wrap a store mutation so that the k-th one of a run raises instead."""


class Crash(Exception):
    pass


def crash_at(real, calls, k):
    """`real`, counting its calls in `calls` (shared by every wrapped step): the call made
    when `k` steps have run raises Crash instead."""
    def wrapper(*args, **kwargs):
        if len(calls) == k:
            raise Crash
        calls.append(real.__name__)
        return real(*args, **kwargs)
    wrapper.__name__ = real.__name__
    return wrapper
