"""`lbdask migrate SRC DEST`: convert a PNG archive into latents as a Dask job (resumable)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from lbdask.cli.inference_options import add_inference_options
from lbdask.cli.options import check_cluster_options
from lbdask.cli.report import cluster_text, drr_text, kept_text, lossy_counts, storage_lines
from lbdask.storage import parse_storage_options


def _bits(text: str) -> int | str:
    if text == "auto":
        return text
    if text in ("16", "8", "6"):
        return int(text)
    raise argparse.ArgumentTypeError(f"must be 16, 8, 6 or auto, not {text!r}")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "migrate", help="convert PNGs under SRC into an archive at DEST",
        description="Convert every *.png under SRC (folder or s3://prefix) into latents in the archive DEST. "
                    "Resumable: rerun the same command after any interruption. Defaults come from configs/jobs.yaml.")
    p.add_argument("src", metavar="SRC", help="folder or s3://bucket/prefix holding the PNGs (never modified)")
    p.add_argument("dest", metavar="DEST", help="archive folder or s3://bucket/path")
    p.add_argument("--model", help="model name from configs/models.yaml, or a diffusers VAE folder / hub id")
    p.add_argument("--weights", metavar="DIR", help="folder holding the model weights")
    p.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler (default: local cluster)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per batch task")
    p.add_argument("--batch-pixels", type=int, metavar="N",
                   help="smaller images batch more than --batch-size while their pixels fit, up to the shard size (0: off)")
    p.add_argument("--latent-bits", type=_bits, metavar="16|8|6|auto", help="stored latent precision")
    p.add_argument("--min-psnr", type=float, metavar="DB", help="below this a latent is kept as PNG (reason fidelity)")
    p.add_argument("--max-latent-ratio", type=float, metavar="R",
                   help="a latent above R x its PNG's bytes is kept as PNG (reason no-saving; default 1.0)")
    p.add_argument("--refine-steps", type=int, metavar="N", help="gradient steps on each latent (0 = off)")
    p.add_argument("--target-psnr", type=float, metavar="DB", help="stop refining an image at this PSNR")
    p.add_argument("--refine-mode", choices=("qat", "float"),
                   help="qat: refine the stored (quantised) latent, float: the float latent (default qat)")
    p.add_argument("--max-pixels", type=int, metavar="N", help="larger images are kept as PNG (reason too-large)")
    p.add_argument("--min-side", type=int, metavar="PX", help="images with a shorter side are kept as PNG (too-small)")
    p.add_argument("--remigrate-changed", action="store_true",
                   help="migrate again the sources whose size or version (mtime; ETag on S3) changed since they "
                        "were migrated (default: report them)")
    p.add_argument("--kept-format", choices=("png", "jxl"),
                   help="images that are not latents: png = the source file byte for byte, "
                        "jxl = its pixels as lossless JPEG XL (~33%% fewer bytes; docs/migration.md)")
    p.add_argument("--lossy-fallback", metavar="off|jxl|avif|best",
                   help="also try a lossy copy that meets --min-psnr: jxl = lossy JPEG XL, avif = AVIF "
                        "(8 and 10 bit), best = all of them; the smallest passing representation wins "
                        "(default off; docs/migration.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--storage-options", metavar="JSON", help="fsspec/s3fs options for SRC and DEST, e.g. an endpoint_url")
    add_inference_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from lbdask.cluster.settings import load_cluster_settings
    from lbdask.config import load_config
    from lbdask.migrate.job import MigrationRequest, run_migration
    from lbdask.models.cpu_memory import CpuMemorySettings
    from lbdask.models.registry import load_registry
    from lbdask.representation.settings import load_job_settings

    check_cluster_options(args)
    # every configuration file the job reads is validated here, before a cluster starts
    load_registry()
    load_config("cpu_memory", CpuMemorySettings)
    settings = load_job_settings(
        model=args.model, weights=args.weights, precision=args.precision, runtime=args.runtime,
        batch_size=args.batch_size, batch_pixels=args.batch_pixels, latent_bits=args.latent_bits,
        min_psnr=args.min_psnr, max_latent_ratio=args.max_latent_ratio, refine_steps=args.refine_steps, target_psnr=args.target_psnr,
        refine_mode=args.refine_mode, max_pixels=args.max_pixels, min_side=args.min_side, kept_format=args.kept_format,
        lossy_fallback=args.lossy_fallback)
    req = MigrationRequest(
        src=args.src, dest=args.dest, settings=settings, cluster=load_cluster_settings(), scheduler=args.scheduler,
        workers=args.workers, storage_options=parse_storage_options(args.storage_options), progress=not args.no_progress,
        remigrate_changed=args.remigrate_changed)
    log = (lambda msg: print(msg, file=sys.stderr)) if not args.no_progress else (lambda msg: None)
    summary = run_migration(req, log=log)
    print(format_summary(summary))
    return 0


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-job lines: counts by outcome and reason, bytes, throughput, PSNR."""
    changed = s.get("sources_changed") or 0
    if not s["images_processed"]:
        note = f"; {changed} source(s) changed since migration (--remigrate-changed)" if changed else ""
        return f"nothing to do: all {s['images_listed']} images under {s['src']} are already in {s['dest']}{note}"
    lines = [
        f"migrated {s['images_processed']} of {s['images_listed']} images "
        f"({s['images_already_committed']} were already committed) in {s['seconds']:.1f} s "
        f"= {s['images_per_s']:.2f} images/s, {s['mb_per_s']:.2f} MB/s",
        f"  time: start-up {s['phase_seconds']['start']:.1f} s (cluster, model), scan {s['phase_seconds']['scan']:.1f} s, "
        f"batches {s['phase_seconds']['batches']:.1f} s = {s['batch_images_per_s']:.2f} images/s while processing",
        f"  latent {s['images_latent']}, {kept_text(s)}, failed {s['images_failed']} "
        f"(raw bytes kept), refused {s['images_refused']}"
        + "".join(f", lossy {codec} {n}" for codec, n in lossy_counts(s)),
    ]
    lines += [f"    {reason}: {n}" for reason, n in s["reasons"].items()]
    if changed:
        lines.append(f"  {changed} source(s) changed since migration (size or version differs)"
                     + (", migrated again" if s.get("sources_changed_remigrated") else ": --remigrate-changed migrates them again"))
    lines.append(f"  bytes: source {s['bytes_source']:,} -> stored {s['bytes_stored']:,} (what this job added "
                 f"to the store, measured)")
    lines += storage_lines(s, indent="    ")
    lines.append(f"  DRR {drr_text(s)}")
    if s.get("cluster"):
        c = s["cluster"]
        share = "" if c.get("peak_worker_memory_fraction") is None else f" ({c['peak_worker_memory_fraction']:.0%} of its limit)"
        lines.append(f"  cluster: {cluster_text(c)}{share}")
    if s["psnr_mean"] is not None:
        lines.append(f"  PSNR of latents: mean {s['psnr_mean']:.2f} dB, p05 {s['psnr_p05']:.2f}, min {s['psnr_min']:.2f}")
    if s.get("psnr_lossy"):
        p = s["psnr_lossy"]
        lines.append(f"  PSNR of lossy copies: mean {p['psnr_mean']:.2f} dB, p05 {p['psnr_p05']:.2f}, min {p['psnr_min']:.2f}")
    run_as = s.get("inference") or {}
    if run_as:
        lines.append(f"  inference: {run_as['runtime']} {run_as['precision']} ({run_as['reason']}), device class {s['device_class']}")
    lines.append(f"  model {s['model']}; job statistics recorded as {s.get('job_id')} (lbdask report {s['dest']})")
    return "\n".join(lines)
