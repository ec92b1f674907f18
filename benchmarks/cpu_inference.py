"""CPU encode / decode speed and PSNR cost of each runtime and precision, against fp32 torch.

    python benchmarks/cpu_inference.py [--sizes 512 1024] [--repeats 5] [--rounds 2] [--configs torch-fp32 ...]

Each configuration is timed in its own process (`--child`), as a worker or `lbdask read`
loads only one runtime: in one process torch's OpenMP pool and OpenVINO's thread pool
competed for the cores and the in-process ratios contradicted each other (docs/benchmarks.md).
A child loads the model, warms up (the first call also builds OpenVINO's shape-specific
kernels), then times `--repeats` encodes and decodes of one corpus crop. Configurations
run one after the other in `--rounds` rounds (round r of every configuration before round
r+1 of any), so a machine shared with other jobs slows them alike. The baseline is
torch-fp32, the path before issue 11 (eager NCHW, fp32), measured in the same run.

Speed: median seconds per image over all repeats of all rounds, spread = (max - min) /
median; speed-up = baseline median / median. PSNR: each configuration's decode of the
baseline's latent, and its own encode + decode round trip, against the baseline's (first
round). Prints a markdown table with machine, date and load averages.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TAEF2 = HERE.parent.parent / "shared" / "models" / "taef2"
CONFIGS = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16")
BASELINE = "torch-fp32"


def child(config: str, size: int, repeats: int, threads: int, out: Path, latent: Path | None) -> None:
    """Time one configuration in this process; write timings (JSON) and pixels (npz) to `out`."""
    import torch
    from model_throughput import CORPUS, sample_images

    from lbdask.models import load_model

    torch.set_num_threads(threads)
    runtime, precision = config.split("-")
    t0 = time.perf_counter()
    model = load_model("taef2", weights=TAEF2 if TAEF2.is_dir() else None, device="cpu",
                       runtime=runtime, precision=precision)
    load_s = time.perf_counter() - t0
    image = sample_images(1, size, CORPUS)
    z_ref = np.load(latent)["z"] if latent else None
    z = model.encode(image)  # warm-up of both directions
    model.decode(z, (size, size))
    times: dict[str, list[float]] = {"encode": [], "decode": []}
    for _ in range(repeats):
        for op, fn in (("encode", lambda: model.encode(image)), ("decode", lambda: model.decode(z, (size, size)))):
            t = time.perf_counter()
            fn()
            times[op].append(time.perf_counter() - t)
    np.savez(out.with_suffix(".npz"), z=z, trip=model.decode(z, (size, size)),
             dec=model.decode(z_ref if z_ref is not None else z, (size, size)))
    out.write_text(json.dumps({"times": times, "load_s": load_s, "runs": model.inference.label,
                               "device_class": model.device_class, "threads": torch.get_num_threads()}))


def run_child(config: str, size: int, args: argparse.Namespace, out: Path, latent: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", config, "--sizes", str(size), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--out", str(out)] + (["--latent", str(latent)] if latent else [])
    subprocess.run(cmd, check=True, cwd=HERE)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per direction per child")
    parser.add_argument("--rounds", type=int, default=2, help="children per configuration and size")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--latent", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.sizes[0], args.repeats, args.threads, args.out, args.latent)
    from lbdask.image.quality import psnr
    from lbdask.models.precision import cpu_has_native_bf16, openvino_available

    configs = [BASELINE] + [c for c in args.configs if c != BASELINE and (not c.startswith("openvino") or openvino_available())]
    load_start, started = os.getloadavg(), datetime.datetime.now(datetime.timezone.utc)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            runs: dict[str, list[dict]] = {c: [] for c in configs}
            for r in range(args.rounds):
                for c in configs:
                    base = Path(tmp) / f"{BASELINE}-{size}-0.json"
                    out = Path(tmp) / f"{c}-{size}-{r}.json"
                    runs[c].append(run_child(c, size, args, out, base.with_suffix(".npz") if c != BASELINE or r else None))
            ref = np.load(Path(tmp) / f"{BASELINE}-{size}-0.npz")
            med = {c: {op: statistics.median(t for run in runs[c] for t in run["times"][op]) for op in ("encode", "decode")}
                   for c in configs}
            for c in configs:
                px = np.load(Path(tmp) / f"{c}-{size}-0.npz")
                spread = {op: (lambda ts: (max(ts) - min(ts)) / statistics.median(ts))(
                    [t for run in runs[c] for t in run["times"][op]]) for op in ("encode", "decode")}
                rows.append((size, c, runs[c][0]["runs"], med[c], spread,
                             {op: med[BASELINE][op] / med[c][op] for op in ("encode", "decode")},
                             psnr(ref["trip"][0], px["dec"][0]) if c != BASELINE else float("inf"),
                             psnr(ref["trip"][0], px["trip"][0]) if c != BASELINE else float("inf")))
    print(f"# CPU inference, one process per configuration - {platform.node()} {platform.machine()} "
          f"({platform.processor() or 'cpu'}), {os.cpu_count()} CPUs, native bf16: {cpu_has_native_bf16()}, "
          f"{args.threads} threads; {started:%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.1f}' for x in load_start)} at start, "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end; {args.rounds} rounds x {args.repeats} repeats\n")
    print("| size | configuration | runs as | encode s/img (median) | spread | decode s/img (median) | spread "
          "| encode speed-up | decode speed-up | PSNR decode vs fp32 (dB) | PSNR round trip vs fp32 (dB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size, c, runs_as, m, spread, up, dec_psnr, trip_psnr in rows:
        print(f"| {size} | {c}{' (baseline)' if c == BASELINE else ''} | {runs_as} | {m['encode']:.3f} | "
              f"{spread['encode']:.0%} | {m['decode']:.3f} | {spread['decode']:.0%} | {up['encode']:.2f}x | "
              f"{up['decode']:.2f}x | {dec_psnr:.1f} | {trip_psnr:.1f} |")


if __name__ == "__main__":
    main()
