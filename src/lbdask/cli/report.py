"""`lbdask report DEST [--json]`: counts, bytes, DRR, PSNR distribution and throughput."""
from __future__ import annotations

import argparse
import json
from typing import Any

from lbdask.storage import parse_storage_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="summarise an archive: counts, bytes, DRR, PSNR")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options as a JSON object")
    return p


def _db(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} dB"


#: Labels of the per-representation lines (report and job summary).
LABELS = {"latent": "latent", "png": "kept PNG", "jxl": "kept JXL", "jxl-lossy": "lossy JXL", "avif-lossy": "lossy AVIF",
          "failed": "failed (raw)", "catalog": "catalog", "pixels": "pixel tier", "overhead": "overhead"}
#: Shown only when the archive holds any (kept formats, docs/migration.md).
OPTIONAL = ("jxl", "jxl-lossy", "avif-lossy")
#: The codec of each lossy representation, as the headline counts name it.
LOSSY_CODECS = {"jxl-lossy": "JPEG XL", "avif-lossy": "AVIF"}


def drr_text(s: dict[str, Any]) -> str:
    """DRR as a percentage, or why there is none (nothing converted to a latent)."""
    if s["drr"] is not None:
        return f"{s['drr']:.1%} (1 - stored / source, over every input stored)"
    if not s["bytes_source"]:
        return "- (no input stored)"
    return (f"none: no input was converted to a latent ({s['bytes_stored']:,} bytes stored for "
            f"{s['bytes_source']:,} bytes of input)")


def storage_lines(s: dict[str, Any], indent: str = "  ") -> list[str]:
    """Stored bytes per representation (they sum to bytes_stored), as report and summary print them."""
    reps = s["representations"]
    lines = []
    for name, label in LABELS.items():
        part = reps.get(name, {"images": 0, "bytes_source": 0, "bytes_stored": 0})
        if (name in OPTIONAL and not part["images"]) or (name == "pixels" and not part["bytes_stored"]):
            continue
        if "images" in part:
            lines.append(f"{indent}{label:<14}{part['images']:>6} images {part['bytes_source']:>14,} -> "
                         f"{part['bytes_stored']:>14,}")
        else:
            lines.append(f"{indent}{label:<14}{'':>29} -> {part['bytes_stored']:>14,}")
    if reps.get("refused", {}).get("images"):
        lines.append(f"{indent}{'refused':<14}{reps['refused']['images']:>6} images, not stored (not a regular "
                     f"file inside SRC, or unreadable)")
    return lines


def kept_text(rep: dict[str, Any]) -> str:
    """`images_kept_png` counts every kept row; say how many of them are lossless JPEG XL."""
    jxl = rep.get("representations", {}).get("jxl", {}).get("images", 0)
    if not jxl:
        return f"{rep['images_kept_png']} kept as PNG"
    return f"{rep['images_kept_png']} kept ({rep['images_kept_png'] - jxl} PNG, {jxl} lossless JPEG XL)"


def lossy_counts(rep: dict[str, Any]) -> list[tuple[str, int]]:
    """(codec, images) of each lossy representation the report or job summary holds."""
    reps = rep.get("representations", {})
    return [(codec, reps[key]["images"]) for key, codec in LOSSY_CODECS.items() if reps.get(key, {}).get("images")]


def render(rep: dict[str, Any]) -> str:
    """The report as readable text."""
    lines = [
        f"model           {rep['model']} ({str(rep['model_fingerprint'])[:12]})",
        f"images          {rep['images_total']}: {rep['images_latent']} latent, "
        f"{kept_text(rep)}, {rep['images_failed']} failed (raw bytes kept), "
        f"{rep['images_refused']} refused"
        + "".join(f", {n} lossy {codec}" for codec, n in lossy_counts(rep)),
        f"bytes source    {rep['bytes_source']:,}",
        f"bytes stored    {rep['bytes_stored']:,} (measured on the store)",
        *storage_lines(rep),
        f"DRR             {drr_text(rep)}",
        f"PSNR            mean {_db(rep['psnr_mean'])}, p05 {_db(rep['psnr_p05'])}, min {_db(rep['psnr_min'])}",
    ]
    for status in ("kept", "failed", "refused", "lossy"):
        for reason, n in sorted(rep.get(f"{status}_reasons", {}).items()):
            lines.append(f"{status:<15} {n} x {reason}")
    if rep.get("psnr_lossy"):
        p = rep["psnr_lossy"]
        lines.append(f"PSNR lossy      mean {_db(p['psnr_mean'])}, p05 {_db(p['psnr_p05'])}, min {_db(p['psnr_min'])}")
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
    if rep.get("retier"):
        lines.append(f"retier          {retier_text(rep['retier'])}")
    if rep["cluster"]:
        lines.append(f"cluster         {cluster_text(rep['cluster'])} over {rep['cluster']['jobs']} job(s)")
    return "\n".join(lines)


def cluster_text(c: dict[str, Any]) -> str:
    """Worker losses, retried tasks and peak worker memory, in words."""
    peak = "-" if not c.get("peak_worker_memory") else f"{c['peak_worker_memory'] / 2**30:.2f} GiB"
    return (f"{c['workers_lost']} worker(s) lost or restarted, {c['tasks_retried']} task(s) retried, "
            f"peak worker memory {peak}")


def run(args: argparse.Namespace) -> int:
    from lbdask.archive import Archive  # zarr
    from lbdask.archive.summary import summarize

    arc = Archive.open(args.dest, storage_options=parse_storage_options(args.storage_options))
    rep = summarize(arc)
    print(json.dumps(rep, indent=1) if args.json else render(rep))
    return 0


def retier_text(r: dict[str, Any]) -> str:
    """Re-tiering runs in words: totals, then what the last run moved by kind."""
    last = r["last"]
    kinds = ", ".join(f"{k} {n}" for k, n in last["moved"].items() if n) or "nothing moved"
    fid = last.get("reencoded") or {}
    if fid.get("objects"):
        before, after = fid["psnr_before"]["psnr_mean"], fid["psnr_after"]["psnr_mean"]
        kinds += f" (re-encoded PSNR mean {'-' if before is None else f'{before:.2f}'} -> {after:.2f} dB)"
    swept = last.get("swept") or {}
    if swept.get("bytes"):
        kinds += f"; swept {swept['bytes']:,} bytes ({swept.get('latent_bytes', 0):,} of latent shards)"
    return (f"{r['runs']} run(s), {r['objects_moved']} object(s) moved; last run {last['job_id']} "
            f"({last['job_started']}): {kinds}")
