"""CPU encode + decode with glibc's default malloc against freed memory kept in the heap.

    python benchmarks/cpu_memory.py [--sizes 256 512 1024] [--batches 1 4] [--repeats 2] [--runtime torch]

Each setting runs in its own interpreter (malloc settings are per process): once with
`retain_freed_memory: false` (glibc's defaults, the baseline), once with the shipped
`configs/cpu_memory.yaml`, and once more with the heap's free pages given back after each
call as a Dask worker does (`release_freed_memory`, `release_above_mb`). Reports TAEF2 encode and decode images/s on corpus crops, and
the process's user and kernel CPU seconds and peak resident memory, as a markdown table
with machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from model_throughput import CORPUS, images_per_second, sample_images

TAEF2 = CORPUS.parent.parent / "models" / "taef2"


def child(sizes: list[int], batches: list[int], repeats: int, runtime: str, release: bool) -> None:
    """Measure in this process and print one JSON line."""
    import torch

    from lbdask.models import load_model
    from lbdask.models.cpu_memory import release_freed_memory

    model = load_model("taef2", weights=TAEF2 if TAEF2.is_dir() else None, device="cpu", runtime=runtime)

    def call(fn):
        def run():  # one model call, then what a worker does after it (ResidentModel.use)
            fn()
            if release:
                release_freed_memory()
        return run
    rates = {}
    for size in sizes:
        images = sample_images(max(batches), size, CORPUS)
        latents = model.encode(images[:1])
        for batch in batches:
            if size >= 1024 and batch > 1:
                continue  # minutes per point on a small CPU; the trend is clear at 256-512
            model.spec.cpu_batch_size = batch
            data_z = latents.repeat(batch, axis=0)
            rates[f"{size}/{batch}/encode"] = images_per_second(call(lambda: model.encode(images[:batch])), batch, repeats)
            rates[f"{size}/{batch}/decode"] = images_per_second(
                call(lambda: model.decode(data_z, size=(size, size))), batch, repeats)
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rates": rates, "runs_as": model.inference.label, "user_s": use.ru_utime, "sys_s": use.ru_stime,
                      "max_rss_mb": use.ru_maxrss / 1024, "threads": torch.get_num_threads()}))


def run_child(args: argparse.Namespace, config_dir: Path | None, release: bool = False) -> dict:
    env = dict(os.environ)
    if config_dir is not None:
        env["LBDASK_CONFIG_DIR"] = str(config_dir)
    cmd = [sys.executable, __file__, "--child", "--sizes", *map(str, args.sizes), "--batches", *map(str, args.batches),
           "--repeats", str(args.repeats), "--runtime", args.runtime, *(["--release"] if release else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runtime", default="torch", help="torch | openvino | auto (configs/models.yaml runtimes)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--release", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.sizes, args.batches, args.repeats, args.runtime, args.release)
        return
    from lbdask.config import DEFAULT_CONFIG_DIR

    with tempfile.TemporaryDirectory() as tmp:
        baseline_dir = Path(tmp) / "configs"
        shutil.copytree(DEFAULT_CONFIG_DIR, baseline_dir)
        (baseline_dir / "cpu_memory.yaml").write_text("retain_freed_memory: false\n")
        base = run_child(args, baseline_dir)
    kept = run_child(args, None)
    released = run_child(args, None, release=True)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores, {platform.libc_ver()[0]} "
          f"{platform.libc_ver()[1]}, {base['runs_as']}, torch {base['threads']} threads; date: {datetime.datetime.now():%Y-%m-%d %H:%M}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| size | batch | op | glibc default img/s | freed memory kept img/s | speed-up | kept, released after each call img/s | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for key, rate in base["rates"].items():
        size, batch, op = key.split("/")
        print(f"| {size} | {batch} | {op} | {rate:.2f} | {kept['rates'][key]:.2f} | {kept['rates'][key] / rate:.2f}x "
              f"| {released['rates'][key]:.2f} | {released['rates'][key] / rate:.2f}x |")
    print("\n| process | user CPU s | kernel CPU s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, got in (("glibc default", base), ("freed memory kept", kept), ("kept, released after each call", released)):
        print(f"| {name} | {got['user_s']:.1f} | {got['sys_s']:.1f} | {got['max_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
