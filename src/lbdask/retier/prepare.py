"""A re-tiering run before anything moves: the plan (lbdask.tiering) from the archive's catalog,
its access log, the policy and the source clean-up's state, and the request that applies it.

`lbdask retier` prints the plan; with `--apply` it hands `PlannedRun.request` to
`lbdask.retier.apply`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbdask.access.log import load_access
from lbdask.archive import Archive, CatalogRow
from lbdask.archive.creation import archive_meta
from lbdask.archive.model_table import resolve_reference
from lbdask.cluster.session import worker_path
from lbdask.models.resident import model_configs
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import list_source_ids
from lbdask.retier.moves import MoveContext
from lbdask.retier.reencode import ReencodeSpec
from lbdask.retier.sources import quarantined
from lbdask.storage import open_location
from lbdask.tiering.plan import Plan, plan_moves
from lbdask.tiering.policy import RetierPolicy

if TYPE_CHECKING:
    from lbdask.retier.apply import ApplyRequest


@dataclass
class PlannedRun:
    """A plan and what applying it needs."""

    dest: str
    options: dict[str, Any]
    policy: RetierPolicy
    settings: JobSettings
    floor: float  # the demote PSNR floor
    now: float
    spec: ReencodeSpec | None
    plan: Plan

    def moved_rows(self) -> dict[str, CatalogRow]:
        """The current rows of the ids the plan moves (a second pass over the catalog, holding
        only those: applying sizes each chunk by its rows)."""
        ids = {i for kind, moved in self.plan.moves.items() if kind not in ("prewarm", "purge") for i in moved}
        arc = Archive.open(self.dest, mode="r", storage_options=self.options or None)
        return {r.id: r for r in arc.rows() if r.id in ids}

    def request(self, scheduler: str | None, workers: int | None, weights: str | None, progress: bool) -> ApplyRequest:
        """The request that applies this plan (`lbdask.retier.apply.apply_plan`)."""
        from lbdask.retier.apply import ApplyRequest  # the cluster side: only when applying

        clean = self.policy.source_cleanup
        ctx = MoveContext(self.settings.with_overrides(min_psnr=self.floor), self.floor, self.policy.convert.effort,
                          clean.source, clean.quarantine,
                          dt.datetime.fromtimestamp(self.now, dt.UTC).strftime("%Y%m%d"), self.spec)
        return ApplyRequest(self.dest, self.plan, self.moved_rows(), ctx, self.policy.batch_size, self.options, weights, scheduler,
                            workers, progress=progress, prewarm_scheduler=self.policy.prewarm.scheduler)


def plan_run(dest: str, policy: RetierPolicy, settings: JobSettings, options: dict[str, Any], now: float,
             weights: str | None) -> PlannedRun:
    """Plan the moves of the archive at `dest` as of `now` (epoch seconds)."""
    floor = settings.min_psnr if policy.demote.min_psnr is None else policy.demote.min_psnr
    arc = Archive.open(dest, mode="r", storage_options=options or None)
    created = dt.datetime.fromisoformat(archive_meta(arc.loc)["created"]).timestamp()
    clean = policy.source_cleanup
    sources = held = None
    if clean.enabled:
        sources = list_source_ids(open_location(clean.source, options or None)).sizes
        held = quarantined(open_location(clean.quarantine, options or None))
    spec = reencode_spec(arc, policy, settings.min_psnr, weights)
    plan = plan_moves(dest, arc.rows(), load_access(arc.loc), policy, now, created, floor, sources, held or (),
                      spec.from_fingerprint if spec else None)
    return PlannedRun(dest, options, policy, settings, floor, now, spec, plan)


def reencode_spec(arc: Archive, policy: RetierPolicy, min_psnr: float, weights: str | None) -> ReencodeSpec | None:
    """The policy's re-encode with `from` resolved against the archive's model table and
    local folders made absolute for the workers; None when re-encode is off."""
    re = policy.reencode
    if not re.enabled:
        return None
    return ReencodeSpec(resolve_reference(arc, re.from_)["fingerprint"], worker_path(re.to), worker_path(re.weights),
                        worker_path(weights), re.source or policy.source_cleanup.source,
                        re.min_psnr if re.min_psnr is not None else min_psnr, model_configs())
