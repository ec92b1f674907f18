"""`lbdask serve --prewarm N|FILE`: which ids to load into the caches of a freshly served cluster.

N: the N hottest ids ranked as `lbdask retier`'s prewarm move ranks them (most reads within
`prewarm.window_days` of configs/retier.yaml, lbdask.tiering.plan.predicted_hot); FILE: one id
per line. The ids are then loaded through `ServingClient.prewarm`, like retier's prewarm move.
"""
from __future__ import annotations

import dataclasses
import time

from lbdask.access.log import load_access
from lbdask.archive import Archive
from lbdask.errors import InputError
from lbdask.serve.client import ServingClient
from lbdask.serve.settings import ClientConfig
from lbdask.tiering.plan import predicted_hot
from lbdask.tiering.policy import load_policy


def prewarm_ids(dest: str, spec: str, storage_options: dict | None = None) -> list[str]:
    """The ids `--prewarm spec` names: a count (digits) ranks by access statistics, anything else is a file."""
    if spec.isdigit():
        return hottest_ids(dest, int(spec), storage_options)
    try:
        with open(spec, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise InputError(f"--prewarm: cannot read id file {spec}: {exc.strerror or exc}") from None


def hottest_ids(dest: str, n: int, storage_options: dict | None = None) -> list[str]:
    """The `n` readable ids with the most recent reads (retier's prewarm ranking, its window),
    in one pass over the catalog holding `n` rows."""
    policy = load_policy(None)
    policy = dataclasses.replace(policy, prewarm=dataclasses.replace(policy.prewarm, top=n))
    arc = Archive.open(dest, mode="r", storage_options=storage_options)
    return [row.id for row, _ in predicted_hot(arc.rows(), load_access(arc.loc), policy, time.time())]


def prewarm(dest: str, scheduler: str, ids: list[str], config: ClientConfig,
            storage_options: dict | None = None) -> str:
    """Load `ids` into their owners' caches; the one-line summary to print."""
    with ServingClient(dest, scheduler, storage_options, config) as box:
        loaded = box.prewarm(ids) if ids else 0
    return f"prewarmed {loaded} of {len(ids)} ids"
