"""Summaries of re-tiering runs (`lbdask retier --apply`), kept beside the migration job statistics.

Each run writes one JSON object `retier/<job id>.json` (atomic); `lbdask report` lists them.
They live apart from `jobs/` so that migration throughput is never mixed with re-tiering.
"""
from __future__ import annotations

import json
from typing import Any

from lbdask.archive.catalog import BATCH_ID
from lbdask.archive.objects import put_atomic, store_errors
from lbdask.archive.store import Archive
from lbdask.errors import InputError

FOLDER = "retier"


def write_retier_run(arc: Archive, summary: dict[str, Any]) -> None:
    """Record one run's summary under its `job_id`."""
    job_id = str(summary["job_id"])
    if not BATCH_ID.match(job_id):
        raise InputError(f"invalid job id {job_id!r}")
    with store_errors(arc.url):
        put_atomic(arc.loc, arc.loc.path(FOLDER, job_id + ".json"), json.dumps(summary, indent=1, default=str).encode())


def read_retier_runs(arc: Archive) -> list[dict[str, Any]]:
    """Every recorded run summary, oldest first."""
    paths = arc.json_paths(FOLDER)
    with store_errors(arc.url):
        return [json.loads(arc.loc.fs.cat_file(p)) for p in paths]
