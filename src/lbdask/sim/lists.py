"""Doubly linked lists over flat arrays for the simulator kernel, and the tuner's ghost lists.

`lists[L] = (oldest, newest, bytes)`; `links[0 | 1, o]` are object o's previous / next.
Ghost lists live in `glists[node * 4 + g]` with links `glinks[g]`: g = t is S3-FIFO's ghost
of tier t, g = 2 + t the tuner's (`src/lbdask/cache/tuner.py`, byte budget `caps[node, t, 4]`).
"""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def push(lists, links, lid, o):
    """Append o as the newest of list lid."""
    last = lists[lid, 1]
    links[0, o] = last
    links[1, o] = -1
    if last >= 0:
        links[1, last] = o
    else:
        lists[lid, 0] = o
    lists[lid, 1] = o


@njit(cache=True)
def unlink(lists, links, lid, o):
    """Take o out of list lid."""
    p = links[0, o]
    q = links[1, o]
    if p >= 0:
        links[1, p] = q
    else:
        lists[lid, 0] = q
    if q >= 0:
        links[0, q] = p
    else:
        lists[lid, 1] = p


@njit(cache=True)
def trim_list(st, node, t, g, cap):
    """Drop the oldest entries of ghost list g (of tier t) until it holds <= cap bytes."""
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    gid = node * 4 + g
    while glists[gid, 2] > cap:
        o = glists[gid, 0]
        unlink(glists, glinks[g], gid, o)
        inghost[g, o] = False
        glists[gid, 2] -= sizes[t, o]


@njit(cache=True)
def ghost_add(st, node, t, o):
    """Remember an object that left tier t in the tuner's ghost list (if it has bytes)."""
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    if caps[node, t, 4] <= 0:
        return
    g = 2 + t
    gid = node * 4 + g
    if inghost[g, o]:
        unlink(glists, glinks[g], gid, o)
        glists[gid, 2] -= sizes[t, o]
    push(glists, glinks[g], gid, o)
    inghost[g, o] = True
    glists[gid, 2] += sizes[t, o]
    trim_list(st, node, t, g, caps[node, t, 4])


@njit(cache=True)
def ghost_pop(st, node, t, o):
    """Forget o in tier t's tuner ghost list; True if it was there (a ghost hit)."""
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    g = 2 + t
    if not inghost[g, o]:
        return False
    gid = node * 4 + g
    unlink(glists, glinks[g], gid, o)
    inghost[g, o] = False
    glists[gid, 2] -= sizes[t, o]
    return True
