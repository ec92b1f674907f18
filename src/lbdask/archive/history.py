"""The archive's job history: one record per migration job (`jobs/<job id>.json`: what the job
did, its throughput and cluster health) and one per re-tiering run (`lbdask retier --apply`,
`retier/<job id>.json`), each written atomically; `lbdask report` reads them.

Re-tiering runs live apart from `jobs/` so that migration throughput is never mixed with
re-tiering. (Access statistics, what serving records about reads, are `lbdask.access`.)
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from lbdask.archive.catalog import BATCH_ID
from lbdask.archive.objects import put_atomic, store_errors
from lbdask.archive.store import Archive
from lbdask.errors import InputError

#: Folders of the records: migration jobs, re-tiering runs.
JOBS_FOLDER = "jobs"
FOLDER = "retier"


def write_job_record(arc: Archive, record: dict[str, Any]) -> str:
    """Record one migration job (a JSON object); returns its job id (`record["job_id"]`, or a new one)."""
    job_id = str(record.get("job_id") or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    if not BATCH_ID.match(job_id):
        raise InputError(f"invalid job id {job_id!r}")
    body = json.dumps({**record, "job_id": job_id}, indent=1, default=str).encode()
    with store_errors(arc.url):
        put_atomic(arc.loc, arc.loc.path(JOBS_FOLDER, job_id + ".json"), body)
    return job_id


def read_job_records(arc: Archive) -> list[dict[str, Any]]:
    """Every recorded migration job, oldest job id first."""
    paths = arc.json_paths(JOBS_FOLDER)
    with store_errors(arc.url):
        return [json.loads(arc.loc.fs.cat_file(p)) for p in paths]


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
