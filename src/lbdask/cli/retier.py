"""`lbdask retier DEST`: plan re-tiering moves from access statistics and the policy; `--apply` runs them.

Without `--apply` nothing in the archive (or the source) changes: the plan is printed, and
written as JSON with `--plan-out`. With `--apply` the plan runs as a Dask job on the
embedded local cluster or `--scheduler ADDR`; it is resumable (docs/operations.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from lbdask.cli.options import check_cluster_options
from lbdask.errors import LbdaskError
from lbdask.storage import parse_storage_options


def _when(text: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "retier", help="plan (and with --apply run) moves between storage tiers",
        description="Plan moves of archived objects by the policy (configs/retier.yaml) and the access statistics "
                    "of the serving workers; --apply runs them as a resumable Dask job.")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--policy", metavar="FILE", help="policy YAML file (default: configs/retier.yaml)")
    p.add_argument("--plan-out", metavar="FILE", help="also write the plan as JSON to FILE")
    p.add_argument("--apply", action="store_true", help="run the plan (default: print it and change nothing)")
    p.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler (default: local cluster)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster")
    p.add_argument("--weights", metavar="DIR", help="weights of the archive's model (demote and promote run it)")
    p.add_argument("--now", type=_when, metavar="ISO",
                   help="plan as of this UTC date/time instead of now (what a run on that day would do)")
    p.add_argument("--verbose", "-v", action="store_true", help="list the ids of every move")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options for DEST, source and quarantine")
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.cluster.settings import load_cluster_settings
    from lbdask.representation.settings import load_job_settings
    from lbdask.retier.prepare import plan_run
    from lbdask.serve.settings import load_serve_settings
    from lbdask.tiering.policy import load_policy

    check_cluster_options(args)
    policy = load_policy(args.policy)
    policy.check_retention(load_serve_settings().worker.access_retention_days)
    settings = load_job_settings(lossy_fallback="off")
    load_cluster_settings()  # validated before anything runs
    planned = plan_run(args.dest, policy, settings, parse_storage_options(args.storage_options),
                       args.now if args.now is not None else time.time(), args.weights)
    print(planned.plan.render(args.verbose))
    if args.plan_out:
        write_plan(planned.plan.to_json(), args.plan_out)
    if not args.apply:  # an empty plan still applies: the sweep finishes what a killed run left
        return 0
    from lbdask.retier.apply import apply_plan

    req = planned.request(args.scheduler, args.workers, args.weights, progress=not args.no_progress)
    log = (lambda msg: print(msg, file=sys.stderr)) if not args.no_progress else (lambda msg: None)
    print(format_run(apply_plan(req, log)))
    return 0


def write_plan(plan: dict[str, Any], path: str) -> None:
    """`--plan-out`: the plan as JSON."""
    try:
        with open(path, "w") as f:
            json.dump(plan, f, indent=1)
    except OSError as exc:
        raise LbdaskError(f"cannot write {path}: {exc.strerror or exc}") from None


def format_run(s: dict[str, Any]) -> str:
    """The end-of-run lines (also what `lbdask report` shows per run)."""
    lines = [f"retier run {s['job_id']}: {s['objects_moved']} object(s) moved in {s['seconds']:.1f} s"]
    for kind, m in s["moves"].items():
        if m["planned"] or m["moved"]:
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(m["skipped"].items()))
            lines.append(f"  {kind:<11}{m['moved']:>6}/{m['planned']:<6} {m['bytes_before']:>12,} -> "
                         f"{m['bytes_after']:>12,} bytes" + (f" (skipped: {skipped})" if skipped else ""))
    if s.get("psnr_demoted", {}).get("psnr_mean") is not None:
        p = s["psnr_demoted"]
        lines.append(f"  demoted PSNR mean {p['psnr_mean']:.2f} dB, min {p['psnr_min']:.2f} dB")
    fid = s.get("reencoded") or {}
    if fid.get("objects"):
        copies = ", ".join(f"{n} from {c}" for c, n in sorted(fid["copies"].items()))
        before, after = fid["psnr_before"]["psnr_mean"], fid["psnr_after"]["psnr_mean"]
        lines.append(f"  re-encoded PSNR mean {before if before is None else round(before, 2)} -> {after:.2f} dB ({copies})")
    lines.append(f"  swept {s['swept']['objects']} unreferenced object(s), {s['swept']['bytes']:,} bytes"
                 + swept_latents(s["swept"]))
    return "\n".join(lines)


def swept_latents(swept: dict[str, Any]) -> str:
    """The latent part of a sweep in words ("" for runs recorded before latents were swept)."""
    if "latent_shards" not in swept:
        return ""
    text = f" (latent shards: {swept['latent_shards']}, {swept['latent_bytes']:,} bytes)"
    if swept["pinned_shards"]:
        text += (f"; {swept['pinned_bytes']:,} bytes of released latents stay pinned in {swept['pinned_shards']} "
                 f"shard(s) beside live ones")
    return text
