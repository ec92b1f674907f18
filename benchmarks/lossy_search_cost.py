"""CPU seconds per megapixel of the migration's lossy searches, per format and PSNR floor.

    python benchmarks/lossy_search_cost.py [--src DIR] [--limit N] [--floors 30 38 42] [--out DIR]

What a user pays for `--lossy-fallback jxl|avif|best` at each `--min-psnr`: each search is
the function the migration calls (`lbdask.image.kept.search_lossy`, `search_avif` at 8 and
10 bits; `best` runs all three), timed by process CPU time (all its threads, so the load of
a shared machine inflates it less than wall time) on whole corpus images in a seeded random
order. The baseline in the same run is lossy JPEG XL, the policy before AVIF: each row
gives its CPU time and bytes as a multiple of JPEG XL's on the same images and floor.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lbdask.image import kept

SETTINGS = {
    "jxl (effort 3)": lambda rgb, floor: kept.search_lossy(rgb, floor),
    "avif 8-bit (speed 8)": lambda rgb, floor: kept.search_avif(rgb, floor, 8),
    "avif 10-bit (speed 8)": lambda rgb, floor: kept.search_avif(rgb, floor, 10),
}
BASELINE = "jxl (effort 3)"


def load_images(src: Path, limit: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """`limit` corpus PNGs that decode, in a seeded random order, as RGB."""
    paths = sorted(src.glob("*.png"))
    random.Random(seed).shuffle(paths)
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append((path.name, np.asarray(im.convert("RGB"))))
        except OSError:
            continue  # the corpus holds broken files on purpose
        if len(out) == limit:
            break
    return out


def measure(images: list[tuple[str, np.ndarray]], floors: list[float]) -> list[dict]:
    """One row per setting, floor and image: CPU seconds, bytes and the PSNR found (None: no pass)."""
    rows = []
    for floor in floors:
        for name, rgb in images:
            for setting, search in SETTINGS.items():
                t0 = time.process_time()
                found = search(rgb, floor)
                rows.append({"setting": setting, "floor": floor, "image": name, "mp": rgb.shape[0] * rgb.shape[1] / 1e6,
                             "cpu_s": time.process_time() - t0, "bytes": len(found.data) if found else None,
                             "psnr": found.psnr if found else None})
    return rows


def table(rows: list[dict]) -> str:
    """Per setting and floor: CPU s/MP and KB/MP over the images, and both against the baseline."""
    lines = ["| floor | setting | CPU s/MP | KB/MP (passing) | passes | CPU vs jxl | bytes vs jxl (both pass) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for floor in sorted({r["floor"] for r in rows}):
        at = [r for r in rows if r["floor"] == floor]
        base = {r["image"]: r for r in at if r["setting"] == BASELINE}
        for setting in SETTINGS:
            mine = [r for r in at if r["setting"] == setting]
            mp = sum(r["mp"] for r in mine)
            cpu = sum(r["cpu_s"] for r in mine)
            ok = [r for r in mine if r["bytes"]]
            kb = sum(r["bytes"] for r in ok) / 1e3 / max(sum(r["mp"] for r in ok), 1e-9)
            both = [r for r in ok if base[r["image"]]["bytes"]]
            ratio = (sum(r["bytes"] for r in both) / sum(base[r["image"]]["bytes"] for r in both)) if both else float("nan")
            base_cpu = sum(base[r["image"]]["cpu_s"] for r in mine)
            lines.append(f"| {floor:g} dB | {setting} | {cpu / mp:.2f} | {kb:.0f} | {len(ok)}/{len(mine)} | "
                         f"{cpu / base_cpu:.2f}x | {ratio:.3f}x |")
    return "\n".join(lines)


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=here.parent.parent / "shared" / "corpus" / "ai-png")
    p.add_argument("--limit", type=int, default=6)
    p.add_argument("--floors", type=float, nargs="+", default=[30.0, 38.0, 42.0])
    p.add_argument("--out", type=Path, default=None, help="also write lossy_search_cost.json/.md here")
    args = p.parse_args()
    images = load_images(args.src, args.limit)
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = measure(images, args.floors)
    head = (f"{started:%Y-%m-%d %H:%M} UTC, {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at the end; {len(images)} images, "
            f"{sum(r[1].shape[0] * r[1].shape[1] for r in images) / 1e6:.2f} MP: {', '.join(n for n, _ in images)}")
    text = f"{head}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lossy_search_cost.json").write_text(json.dumps({"head": head, "rows": rows}, indent=1))
        (args.out / "lossy_search_cost.md").write_text(text)


if __name__ == "__main__":
    main()
