"""Numba-compiled replay of the dual-format cache over integer object ids and byte sizes.

The same algorithm as `lbdask.cache` (tests check identical outcome sequences), with all
per-object state in flat arrays: one doubly linked list slot per object (an object is in
at most one list at a time), one ghost slot per object per tier for S3-FIFO and one
per object per tier for the tuner's ghost lists.

Lists: per node, per tier t (0 image, 1 latent), three lists: 0 = main (LRU) or S3-FIFO
small queue, 1 = S3-FIFO main queue, 2 = tail. `where[o] = 3 * t + list` or -1.
`lists[L] = (oldest, newest, bytes)`; `caps[node, t] = (main, tail, small, total, ghost)`.
Ghost lists: `glists[node * 4 + g]`, g = t for S3-FIFO's and 2 + t for the tuner's.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from lbdask.cache.capacity import image_capacity, small_capacity, tail_capacity
from lbdask.cache.promotion import AUTO_EAGER, early_hit, tuned_threshold
from lbdask.cache.tuner import (
    ghost_alpha,
    ghost_capacity,
    ghost_gradient,
    ghost_savings,
    marginal_gradient,
    next_alpha,
    window_due,
)
from lbdask.sim.lists import ghost_add, ghost_pop, push, trim_list, unlink

LRU = 0
S3FIFO = 1


class CacheParams(NamedTuple):
    """Per-node cache: total bytes, starting image fraction and the tier settings (numba-typed)."""

    capacity: int
    alpha0: float
    tail_fraction: float
    promote_after: int
    policy: int              # LRU | S3FIFO
    small_fraction: float
    move_after: int
    promote_tuned: bool      # `auto` under the ghost tuner: threshold per node from tuned_threshold


class TunerParams(NamedTuple):
    """The alpha tuner of each node; `adaptive` False keeps alpha0 (numba-typed)."""

    adaptive: bool
    per_byte: bool
    window: int
    step: float
    alpha_min: float
    alpha_max: float
    t_decode: float
    t_fetch: float
    ghost: bool              # ghost-list gradient (then per_byte is ignored)
    ghost_fraction: float
    ghost_step: float
    ghost_events: int


class ReplayOutput(NamedTuple):
    """Arrays the replay fills: per-request outcome and tail flag, the alpha trajectory."""

    outcomes: np.ndarray     # int8 per request: 0 image, 1 latent, 2 miss
    tails: np.ndarray        # bool per request
    traj_index: np.ndarray
    traj_node: np.ndarray
    traj_alpha: np.ndarray


@njit(cache=True)
def _trim_ghost(st, node, t):
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    trim_list(st, node, t, t, caps[node, t, 0] - caps[node, t, 2])


@njit(cache=True)
def _to_tail(st, node, t, o):
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    lid = (node * 2 + t) * 3 + 2
    push(lists, links, lid, o)
    lists[lid, 2] += sizes[t, o]
    where[o] = 3 * t + 2


@njit(cache=True)
def _overflow(st, node, t, policy, move_after):
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    base = (node * 2 + t) * 3
    main_cap = caps[node, t, 0]
    if policy == LRU:
        while lists[base, 2] > main_cap:
            o = lists[base, 0]
            unlink(lists, links, base, o)
            lists[base, 2] -= sizes[t, o]
            _to_tail(st, node, t, o)
    else:
        small, mainq = base, base + 1
        while lists[small, 2] + lists[mainq, 2] > main_cap:
            if lists[small, 2] > caps[node, t, 2] or lists[mainq, 0] < 0:
                o = lists[small, 0]
                unlink(lists, links, small, o)
                lists[small, 2] -= sizes[t, o]
                if freq[o] >= move_after:
                    freq[o] = 0
                    push(lists, links, mainq, o)
                    lists[mainq, 2] += sizes[t, o]
                    where[o] = 3 * t + 1
                    continue
                gid = node * 4 + t
                push(glists, glinks[t], gid, o)
                inghost[t, o] = True
                glists[gid, 2] += sizes[t, o]
                _trim_ghost(st, node, t)
                _to_tail(st, node, t, o)
            else:
                o = lists[mainq, 0]
                unlink(lists, links, mainq, o)
                lists[mainq, 2] -= sizes[t, o]
                if freq[o] > 0:
                    freq[o] -= 1
                    push(lists, links, mainq, o)
                    lists[mainq, 2] += sizes[t, o]
                    continue
                _to_tail(st, node, t, o)
    tid = base + 2
    while lists[tid, 2] > caps[node, t, 1]:
        o = lists[tid, 0]
        unlink(lists, links, tid, o)
        lists[tid, 2] -= sizes[t, o]
        where[o] = -1
        if early_hit(hits[o]):
            early[node] -= abs(sizes[0, o] - sizes[1, o])
        ghost_add(st, node, t, o)


@njit(cache=True)
def _main_insert(st, node, t, o, hot, policy):
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    freq[o] = 0
    seg = 0
    if policy == S3FIFO:
        if inghost[t, o]:
            gid = node * 4 + t
            unlink(glists, glinks[t], gid, o)
            inghost[t, o] = False
            glists[gid, 2] -= sizes[t, o]
            hot = True
        if hot:
            seg = 1
    lid = (node * 2 + t) * 3 + seg
    push(lists, links, lid, o)
    lists[lid, 2] += sizes[t, o]
    where[o] = 3 * t + seg


@njit(cache=True)
def _tier_get(st, node, t, o, policy, move_after):
    """Touch an object known to be in tier t; True when it was a tail hit."""
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    seg = where[o] - 3 * t
    lid = (node * 2 + t) * 3 + seg
    if seg == 2:
        unlink(lists, links, lid, o)
        lists[lid, 2] -= sizes[t, o]
        _main_insert(st, node, t, o, True, policy)
        _overflow(st, node, t, policy, move_after)
        return True
    if policy == LRU:
        unlink(lists, links, lid, o)
        push(lists, links, lid, o)
    elif freq[o] < 3:
        freq[o] += 1
    return False


@njit(cache=True)
def _tier_insert(st, node, t, o, policy, move_after):
    _main_insert(st, node, t, o, False, policy)
    _overflow(st, node, t, policy, move_after)


@njit(cache=True)
def _tier_remove(st, node, t, o):
    (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early) = st
    lid = (node * 2 + t) * 3 + where[o] - 3 * t
    unlink(lists, links, lid, o)
    lists[lid, 2] -= sizes[t, o]
    where[o] = -1


@njit(cache=True)
def _tier_resize(st, node, t, cap, tail_fraction, small_fraction, policy, move_after):
    caps = st[8]
    trim_list(st, node, t, 2 + t, caps[node, t, 4])
    tail = tail_capacity(cap, tail_fraction)
    caps[node, t, 0] = cap - tail
    caps[node, t, 1] = tail
    caps[node, t, 2] = small_capacity(cap - tail, small_fraction)
    caps[node, t, 3] = cap
    _trim_ghost(st, node, t)
    _overflow(st, node, t, policy, move_after)


@njit(cache=True)
def _set_alpha(st, node, capacity, alpha, tail_fraction, small_fraction, policy, move_after):
    img = image_capacity(capacity, alpha)
    _tier_resize(st, node, 0, img, tail_fraction, small_fraction, policy, move_after)
    _tier_resize(st, node, 1, capacity - img, tail_fraction, small_fraction, policy, move_after)


@njit(cache=True)
def replay(obj, node_of, sizes, n_nodes, cache, tuner, out):
    """Replay requests `obj` (dense ids) with `cache` (CacheParams) and `tuner` (TunerParams);
    fills `out` (ReplayOutput).

    Returns (image hits, latent hits, misses, number of trajectory points written).
    `node_of[o]` is the owner node of object o; `sizes[0]` PNG and `sizes[1]` latent bytes.
    """
    capacity, alpha0, tail_fraction, promote_after, policy, small_fraction, move_after, promote_tuned = cache
    (adaptive, per_byte, window, step, alpha_min, alpha_max, t_decode, t_fetch,
     ghost, ghost_fraction, ghost_step, ghost_events) = tuner
    outcomes, tails, traj_index, traj_node, traj_alpha = out
    n_obj = sizes.shape[1]
    links = np.full((2, n_obj), -1, np.int32)
    where = np.full(n_obj, -1, np.int8)
    freq = np.zeros(n_obj, np.int8)
    hits = np.zeros(n_obj, np.int32)
    lists = np.zeros((n_nodes * 6, 3), np.int64)
    lists[:, 0] = -1
    lists[:, 1] = -1
    glinks = np.full((4, 2, n_obj), -1, np.int32)
    inghost = np.zeros((4, n_obj), np.bool_)
    glists = np.zeros((n_nodes * 4, 3), np.int64)
    glists[:, 0] = -1
    glists[:, 1] = -1
    caps = np.zeros((n_nodes, 2, 5), np.int64)
    ghosts = adaptive and ghost
    if ghosts:
        caps[:, :, 4] = ghost_capacity(capacity, ghost_fraction)
    early = np.zeros(n_nodes, np.int64)     # bytes early promotion adds: cached objects with early_hit(hits)
    st = (links, where, freq, hits, lists, glinks, inghost, glists, caps, sizes, early)
    alpha = np.full(n_nodes, alpha0)
    for node in range(n_nodes):
        _set_alpha(st, node, capacity, alpha0, tail_fraction, small_fraction, policy, move_after)
    # per node: requests, image misses, full misses, image tail hits, latent tail hits,
    # image-ghost hits on a miss, latent-ghost hits on a miss, image-ghost hits on a latent hit,
    # early hits (promotion.early_hit)
    win = np.zeros((n_nodes, 9), np.int64)
    h = np.full(n_nodes, AUTO_EAGER if promote_tuned else promote_after)
    totals = np.zeros(3, np.int64)
    n_traj = 0
    for i in range(obj.shape[0]):
        o = obj[i]
        node = node_of[o]
        if adaptive and window_due(win[node, 0], win[node, 5] + win[node, 6] + win[node, 7], window,
                                   ghost_events, ghosts):
            if ghosts:
                d = ghost_gradient(win[node, 5], win[node, 7], win[node, 6], t_decode, t_fetch)
                alpha[node] = ghost_alpha(alpha[node], d, ghost_step, alpha_min, alpha_max)
                if promote_tuned:
                    s_img, s_lat = ghost_savings(win[node, 5], win[node, 7], win[node, 6], t_decode, t_fetch)
                    h[node] = tuned_threshold(win[node, 8], s_img + s_lat, t_decode, early[node],
                                              2 * caps[node, 0, 4])
            else:
                d = marginal_gradient(win[node, 0], win[node, 1], win[node, 2], win[node, 3], win[node, 4],
                                      t_decode, t_fetch, alpha[node], per_byte)
                alpha[node] = next_alpha(alpha[node], d, step, alpha_min, alpha_max)
            win[node, :] = 0
            _set_alpha(st, node, capacity, alpha[node], tail_fraction, small_fraction, policy, move_after)
            if n_traj < traj_index.shape[0]:
                traj_index[n_traj] = i
                traj_node[n_traj] = node
                traj_alpha[n_traj] = alpha[node]
                n_traj += 1
        g_img = ghosts and ghost_pop(st, node, 0, o)
        g_lat = ghosts and ghost_pop(st, node, 1, o)
        w = where[o]
        tail = False
        if w >= 0:
            was = early_hit(hits[o])
            win[node, 8] += was
            hits[o] += 1
            if early_hit(hits[o]) != was:
                early[node] += abs(sizes[0, o] - sizes[1, o]) * (1 if not was else -1)
        if w >= 0 and w < 3:
            out = 0
            tail = _tier_get(st, node, 0, o, policy, move_after)
        elif w >= 3:
            out = 1
            tail = _tier_get(st, node, 1, o, policy, move_after)
            if hits[o] >= h[node] and where[o] >= 3:
                if sizes[0, o] <= caps[node, 0, 0]:
                    _tier_remove(st, node, 1, o)
                    _tier_insert(st, node, 0, o, policy, move_after)
                else:
                    ghost_add(st, node, 0, o)
        else:
            out = 2
            placed = False
            hits[o] = 0
            if h[node] == 0:
                if sizes[0, o] <= caps[node, 0, 0]:
                    _tier_insert(st, node, 0, o, policy, move_after)
                    placed = True
                else:
                    ghost_add(st, node, 0, o)
            if not placed:
                if sizes[1, o] <= caps[node, 1, 0]:
                    _tier_insert(st, node, 1, o, policy, move_after)
                else:
                    ghost_add(st, node, 1, o)
                    if sizes[0, o] <= caps[node, 0, 0]:
                        _tier_insert(st, node, 0, o, policy, move_after)
        if out == 2:
            win[node, 5] += g_img
            win[node, 6] += g_lat
        elif out == 1:
            win[node, 7] += g_img
        win[node, 0] += 1
        if out == 0:
            win[node, 3] += tail
        else:
            win[node, 1] += 1
            if out == 1:
                win[node, 4] += tail
            else:
                win[node, 2] += 1
        totals[out] += 1
        outcomes[i] = out
        tails[i] = tail
    return totals[0], totals[1], totals[2], n_traj
