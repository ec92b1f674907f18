"""Where a CPU migration's time goes, stage by stage, per runtime (one process per runtime).

    python benchmarks/cpu_migrate_stages.py [--limit 6] [--configs torch-fp32 auto] [--rounds 1]

Runs, for each of the first `--limit` corpus PNGs, the steps the migration's `read-png`
and `encode` tasks run with the default job settings (latent_bits 8, kept format png, no
refinement; src/lbdask/migrate/tasks.py) - read, probe, PNG decode, VAE encode, quantise, pcodec
size, the measuring decode (`lbdask.latent.decode.decode_latent`), PSNR, hashes - with the same
library calls, timing each; the shard write is a pcodec encode of the same latent and a
file write. Each configuration runs in its own child process (the baseline torch-fp32 is
the path before issue 11), `--rounds` times, alternating; the table sums the rounds.
Prints seconds and share per stage, each round's total, machine, date and load.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAEF2 = HERE.parent.parent / "shared" / "models" / "taef2"
CORPUS = HERE.parent.parent / "shared" / "corpus" / "ai-png"


def child(config: str, limit: int) -> dict:
    """Time the stages over the first `limit` corpus images in this process."""
    from lbdask.image import pngio
    from lbdask.image.quality import psnr
    from lbdask.latent.codec import LatentCodec, compressed_size, pcodec
    from lbdask.latent.decode import decode_latent, decode_sha256
    from lbdask.models import load_model

    runtime, precision = ("auto", "auto") if config == "auto" else config.split("-")
    t0 = time.perf_counter()
    model = load_model("taef2", weights=TAEF2, device="cpu", runtime=runtime, precision=precision)
    load_s = time.perf_counter() - t0
    spent: dict[str, float] = defaultdict(float)

    def timed(stage, fn):
        t = time.perf_counter()
        out = fn()
        spent[stage] += time.perf_counter() - t
        return out

    pixels = 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(CORPUS.glob("*.png"))[:limit]:
            data = timed("read", f.read_bytes)
            timed("probe", lambda: pngio.probe(data))
            rgb, _ = timed("png-decode", lambda: pngio.decode(data, 10**9))
            pixels += rgb.shape[0] * rgb.shape[1]
            z = timed("vae-encode", lambda: model.encode(rgb[None]))
            enc = timed("quantise", lambda: LatentCodec(8).encode(z[0]))
            stored = timed("quantise", lambda: LatentCodec(8).decode(enc))
            timed("pcodec-size", lambda: compressed_size(enc.data))
            back = timed("verify-decode", lambda: decode_latent(model, stored, rgb.shape[:2]))
            timed("psnr", lambda: psnr(rgb, back))
            timed("hashes", lambda: (decode_sha256(back), hashlib.sha256(data).hexdigest()))
            timed("shard-write", lambda: Path(tmp, f.name).write_bytes(pcodec().encode(enc.data)))
    return {"runs": model.inference.label, "load_s": load_s, "pixels": pixels, "images": limit, "spent": spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--configs", nargs="+", default=["torch-fp32", "auto"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.limit)))
        return
    started, load0 = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()
    results: dict[str, dict] = {}
    totals: dict[str, list[float]] = {c: [] for c in args.configs}
    for _ in range(args.rounds):
        for config in args.configs:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--limit", str(args.limit)],
                                 capture_output=True, text=True, check=True, cwd=HERE)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            totals[config].append(sum(run["spent"].values()))
            if config in results:
                run["spent"] = {k: v + results[config]["spent"][k] for k, v in run["spent"].items()}
            results[config] = run
    first = next(iter(results.values()))
    print(f"# Migration stages on the CPU - {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{started:%Y-%m-%d %H:%M} UTC; load average {'/'.join(f'{x:.1f}' for x in load0)} at start, "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end; first {first['images']} corpus images, "
          f"{first['pixels'] / 1e6:.1f} MP\n")
    stages = list(first["spent"])
    print("| stage | " + " | ".join(f"{c} ({r['runs']}) s | share" for c, r in results.items()) + " |")
    print("|---|" + "---|---|" * len(results))
    for stage in [*stages, "total"]:
        cells = []
        for r in results.values():
            total = sum(r["spent"].values())
            s = total if stage == "total" else r["spent"][stage]
            cells.append(f"{s:.2f} | {s / total:.1%}")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("\ntotal per round: " + "; ".join(f"{c} {', '.join(f'{t:.0f}' for t in ts)} s" for c, ts in totals.items()))
    print("model load (not in the total, last round): " + ", ".join(f"{c} {r['load_s']:.1f} s" for c, r in results.items()))


if __name__ == "__main__":
    main()
