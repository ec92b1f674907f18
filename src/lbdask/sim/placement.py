"""Which simulated node owns each object: the serving hash ring, applied to trace ids.

The simulators route through `lbdask.routing.ring` (the live client's ring, built the same way
from a member list) rather than a hash of their own, so a simulated placement is the
placement the serving cluster would use for the same membership.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lbdask.routing.ring import HashRing, ring_from_workers


def node_members(nodes: int) -> list[str]:
    """Names of `nodes` simulated workers (stand-ins for Dask worker addresses)."""
    return [f"sim-node-{i}" for i in range(nodes)]


def object_key(object_id: int) -> str:
    """The ring key of a trace id: its decimal text, as a client asks for image ids by string."""
    return str(int(object_id))


def owner_index(ids: np.ndarray, members: Sequence[str], ring: HashRing | None = None) -> np.ndarray:
    """Index into `members` of the owner of each id, by `ring` (default: the ring over `members`)."""
    ring = ring if ring is not None else ring_from_workers(list(members))
    index = {m: i for i, m in enumerate(members)}
    owner = ring.owner
    return np.fromiter((index[owner(object_key(i))] for i in ids.tolist()), dtype=np.int32, count=len(ids))
