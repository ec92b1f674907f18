"""Peak memory of one tiled encode or decode call at 16 and 64 MP, one process per case.

    python benchmarks/cpu_peak_memory.py [--mp 16 64] [--ops encode decode] [--configs auto torch-fp32]

Each case (image size x direction x runtime) runs in a fresh child process: it loads
TAEF2, builds its input (an 8-bit RGB image tiled from a corpus crop, or a latent of the
matching shape), notes its resident memory, runs the one call through `LatentModel`
(tiling as configured in configs/models.yaml) and reports the process's peak resident
memory (`ru_maxrss`). The table sets the call's own growth (peak - resident before the
call) beside `call_peak_bytes`, the estimate the worker's memory budget admits calls by
(src/lbdask/models/memory_budget.py). Machine, date and load average are printed.

`--model-tiles K` runs only the first K tiles of a call through the model and gives the
others zeros of the tile's output shape: every image-sized buffer, the blend and the final
conversion are still allocated as in a full call, and each tile's activations are the same
whatever the image size, so the peak is that of the full call at a fraction of the time
(checked against full calls at 16 MP in docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
TAEF2 = HERE.parent.parent / "shared" / "models" / "taef2"
CORPUS = HERE.parent.parent / "shared" / "corpus" / "ai-png"


def rss() -> int:
    return psutil.Process().memory_info().rss


def first_tiles_only(runner, k: int, out_channels: int, scale: float):
    """`runner` for the first `k` calls, then zeros of its output shape (no model compute)."""
    import torch

    calls = [0]

    def run(x):
        calls[0] += 1
        if calls[0] <= k:
            return runner(x)
        n, _, h, w = x.shape
        return torch.zeros((n, out_channels, int(h * scale), int(w * scale)))

    return run


def child(mp: int, op: str, config: str, model_tiles: int = 0) -> dict:
    """Run one call in this process; its sizes, times and memory."""
    from PIL import Image

    from lbdask.models import load_model
    from lbdask.models.memory_budget import call_peak_bytes

    runtime, precision = ("auto", "auto") if config == "auto" else config.split("-")
    model = load_model("taef2", weights=TAEF2 if TAEF2.is_dir() else None, device="cpu",
                       runtime=runtime, precision=precision)
    side = int(round((mp * 2**20) ** 0.5 / 8)) * 8   # 16 -> 4096, 64 -> 8192
    files = sorted(CORPUS.glob("*.png"))
    crop = np.asarray(Image.open(files[0]).convert("RGB"))[:512, :512] if files else np.full((512, 512, 3), 127, np.uint8)
    reps = -(-side // crop.shape[0]), -(-side // crop.shape[1])
    if model_tiles:
        ds = model.downsample
        model.encode_runner = first_tiles_only(model.encode_runner, model_tiles, model.latent_channels, 1 / ds)
        model.decode_runner = first_tiles_only(model.decode_runner, model_tiles, 3, ds)
    if op == "encode":
        data = np.tile(crop, (*reps, 1))[None, :side, :side]
        call = lambda: model.encode(data)  # noqa: E731
    else:
        c, h, w = model.latent_shape(side, side)
        data = np.random.default_rng(0).standard_normal((1, c, h, w), dtype=np.float32)
        call = lambda: model.decode(data, (side, side))  # noqa: E731
    before = rss()
    t = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"model_tiles": model_tiles, "side": side, "pixels": side * side, "tiled": model.needs_tiles(side, side), "runs": model.inference.label,
            "before": before, "peak": peak, "seconds": seconds, "estimate": call_peak_bytes(model.spec, side * side),
            "out_bytes": int(out.nbytes), "input_bytes": int(data.nbytes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--ops", nargs="+", default=["encode", "decode"], choices=["encode", "decode"])
    parser.add_argument("--configs", nargs="+", default=["auto"], help="auto (the default) or RUNTIME-PRECISION")
    parser.add_argument("--model-tiles", type=int, default=0,
                        help="run only the first K tiles through the model (0: all); see above")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mp, op, config = args.child
        print(json.dumps(child(int(mp), op, config, args.model_tiles)))
        return
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    rows = []
    for mp in args.mp:
        for op in args.ops:
            for config in args.configs:
                proc = subprocess.run([sys.executable, __file__, "--child", str(mp), op, config,
                                       "--model-tiles", str(args.model_tiles)],
                                      capture_output=True, text=True, cwd=HERE)
                if proc.returncode:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    rows.append((mp, op, config, None))
                    continue
                rows.append((mp, op, config, json.loads(proc.stdout.strip().splitlines()[-1])))
                print(f"# done {mp} MP {op} {config}", file=sys.stderr, flush=True)
    gib = 2**30
    print(f"# Peak memory of one TAEF2 call by image size - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / gib:.0f} GiB; {started:%Y-%m-%d %H:%M} UTC; load average "
          f"{'/'.join(f'{x:.1f}' for x in load0)} at start, {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end\n")
    print("| image | direction | runs as | tiles through the model | RSS before call (GiB) | peak RSS (GiB) | call's growth (GiB) "
          "| budget estimate (GiB) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mp, op, config, r in rows:
        if r is None:
            print(f"| {mp} MP | {op} | {config} | - | - | failed or stopped | - | - | - |")
            continue
        tiles = f"first {r['model_tiles']}" if r["model_tiles"] else "all"
        print(f"| {r['side']} x {r['side']} ({r['pixels'] / 1e6:.1f} MP) | {op} | {r['runs']} | {tiles} | "
              f"{r['before'] / gib:.2f} | {r['peak'] / gib:.2f} | {(r['peak'] - r['before']) / gib:.2f} | "
              f"{r['estimate'] / gib:.2f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
