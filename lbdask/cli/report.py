"""`lbdask report DEST [--json]`: counts, bytes, DRR, PSNR distribution and throughput."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..archive import Archive
from ..archive.summary import summarize
from ..storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="summarise an archive: counts, bytes, DRR, PSNR")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def _db(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} dB"


def render(rep: dict[str, Any]) -> str:
    """The report as readable text."""
    drr = "-" if rep["drr"] is None else f"{rep['drr']:.1%}"
    parts = rep["bytes_stored_by_part"]
    lines = [
        f"model           {rep['model']} ({str(rep['model_fingerprint'])[:12]})",
        f"images          {rep['images_total']}: {rep['images_latent']} latent, "
        f"{rep['images_kept_png']} kept as PNG, {rep['images_failed']} failed"
        + (f", {rep['images_lossy']} lossy JPEG XL" if rep.get("images_lossy") else ""),
        f"bytes source    {rep['bytes_source']:,}",
        f"bytes stored    {rep['bytes_stored']:,} (latents {parts['latents']:,}, originals {parts['originals']:,}, "
        f"catalog {parts['catalog']:,})",
        f"DRR             {drr}",
        f"PSNR            mean {_db(rep['psnr_mean'])}, p05 {_db(rep['psnr_p05'])}, min {_db(rep['psnr_min'])}",
    ]
    for status in ("kept", "failed", "lossy"):
        for reason, n in sorted(rep.get(f"{status}_reasons", {}).items()):
            lines.append(f"{status:<15} {n} x {reason}")
    for name, r in rep.get("representations", {}).items():
        lines.append(f"stored as {name:<9} {r['images']} images, {r['bytes']:,} bytes (source {r['bytes_source']:,})")
    if rep.get("psnr_lossy"):
        p = rep["psnr_lossy"]
        lines.append(f"PSNR jxl-lossy  mean {_db(p['psnr_mean'])}, p05 {_db(p['psnr_p05'])}, min {_db(p['psnr_min'])}")
    bins = [b for b in rep["psnr_histogram"] if b["count"]]
    if bins:
        lines.append("PSNR histogram")
        top = max(b["count"] for b in bins)
        for b in bins:
            label = f"{'' if b['lo'] is None else int(b['lo'])}-{'' if b['hi'] is None else int(b['hi'])} dB"
            lines.append(f"  {label:>10} {b['count']:>7} {'#' * max(1, round(40 * b['count'] / top))}")
    ref = rep["refinement"]
    if ref:
        b, a = ref["before"], ref["after"]
        lines.append(f"refinement      {ref['images']} images, {ref['steps_mean']:.1f} steps on average, "
                     f"{ref['seconds']:.1f} s of encode-worker time")
        lines.append(f"  before        mean {_db(b['psnr_mean'])}, p05 {_db(b['psnr_p05'])}, min {_db(b['psnr_min'])}")
        lines.append(f"  after         mean {_db(a['psnr_mean'])}, p05 {_db(a['psnr_p05'])}, min {_db(a['psnr_min'])}")
    tp = rep["throughput"]
    if tp:
        lines.append(f"throughput      {tp['images_per_s']:.2f} images/s, {tp['source_mb_per_s']:.2f} MB/s source "
                     f"({tp['images']} images in {tp['seconds']:.1f} s over {tp['jobs']} job(s))")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    arc = Archive.open(args.dest, storage_options=parse_storage_options(args.storage_options))
    rep = summarize(arc)
    print(json.dumps(rep, indent=1) if args.json else render(rep))
    return 0
