"""DRR and PSNR of each kept-format policy on a PNG corpus, and encode/decode time per MP.

    python benchmarks/kept_formats.py [SRC] --latents ARCHIVE|docs/migration.md [--weights DIR]
                                      [--cache FILE] [--limit N] [--budget-s S] [--time-latents N]

Every image is measured once with the code the migration runs: the kept copies
(`lbdask.image.kept.encode_kept`, png and jxl, the jxl one checked pixel for pixel) and, for
latent candidates (the migration's own header and alpha rules), the lossy JPEG XL search
at each PSNR floor. The latents are not re-encoded (TAEF2 on a loaded 2-core CPU takes
minutes per image): their stored bytes and PSNR come from a default `lbdask migrate` of
the same corpus, as an archive or as the per-image table of docs/migration.md. Rows kept
there for `fidelity` / `no-saving` have no latent bytes; they cannot win at any floor of
30 dB or more with `max_latent_ratio` 1 (below the floor, or larger than the PNG and so
than any smaller exact copy), so the chooser gets no latent option for them. Each policy
is then applied offline with `lbdask.fidelity.chooser.choose`, the function `write_shard` calls.
Stored bytes are the objects' bytes (catalog, Zarr metadata and shard indexes excluded:
0.8 % of the source in the real whole-corpus png run of 2026-11-30, docs/benchmarks.md). Per-image results are cached in --cache (JSON), so a rerun only prints.
Images are measured in a seeded random order; `--budget-s` stops measuring new ones after
that many seconds, and the tables cover the images measured (a random subset; say so).
`--time-latents N` also times TAEF2 encode/decode on the first N candidates of at most 1 MP.
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

from lbdask.fidelity.chooser import Option, choose
from lbdask.image import kept, pngio, pngsamples
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec, compressed_size
from lbdask.latent.decode import decode_latent
from lbdask.representation.fate import pre_decode_outcome
from lbdask.representation.settings import JobSettings
from lbdask.representation.sources import SourceItem

FLOORS = (30.0, 38.0, 42.0)
#: (label, kept format, lossy fallback, min PSNR)
POLICIES = (("png (default)", "png", False, 30.0), ("jxl", "jxl", False, 30.0),
            ("jxl + lossy 30 dB", "jxl", True, 30.0),
            ("png, min 38 dB", "png", False, 38.0), ("jxl, min 38 dB", "jxl", False, 38.0),
            ("jxl + lossy 38 dB", "jxl", True, 38.0),
            ("png, min 42 dB", "png", False, 42.0), ("jxl, min 42 dB", "jxl", False, 42.0),
            ("jxl + lossy 42 dB", "jxl", True, 42.0))


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def load_latents(source: str) -> dict[str, tuple[int | None, float | None]]:
    """id -> (latent bytes or None, PSNR) of a default migration: an archive, or docs/migration.md's table."""
    if source.endswith(".md"):
        out = {}
        for line in Path(source).read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 7 and cells[0].endswith(".png") and cells[2] in ("latent", "kept"):
                psnr_cell = cells[6] or None
                out[cells[0]] = (int(cells[5].replace(",", "")) if cells[2] == "latent" else None,
                                 float(psnr_cell) if psnr_cell else None)
        return out
    from lbdask.archive import Archive
    return {r.id: (r.stored_bytes if r.status == "latent" else None, r.psnr) for r in Archive.open(source).rows()}


def measure(path: Path, settings: JobSettings, latents: dict, model=None) -> dict:
    """Every representation of one source PNG, with timings (latents from `latents`; timed with `model`)."""
    png = path.read_bytes()
    info = pngio.probe(png)
    mp = info.pixels / 1e6
    rec: dict = {"id": path.name, "mode": info.mode, "bit_depth": info.bit_depth, "mp": mp, "png": len(png)}
    _, rec["t_png_decode"] = _timed(pngsamples.samples, png)
    obj, rec["t_jxl_keep"] = _timed(kept.encode_kept, png, "jxl", settings.jxl_effort)  # encode + verify
    rec["jxl"], rec["jxl_format"], rec["jxl_note"] = len(obj.data), obj.format, obj.note
    if obj.format == "jxl":
        _, rec["t_jxl_read"] = _timed(kept.to_png, obj.data, "jxl")
    item = SourceItem(path.name, len(png), None, info.width, info.height, info.mode, info.bit_depth, info.has_alpha)
    outcome = pre_decode_outcome(item, settings)
    if outcome is None:
        rgb, alpha = pngio.decode(png, settings.bomb_pixels)
        if alpha is not None and alpha.min() < 255:
            outcome = "transparency"
    rec["candidate"] = outcome is None
    if outcome is not None:
        return rec
    _, rec["t_png_encode"] = _timed(pngio.encode, rgb)
    rec["latent"], rec["latent_psnr"] = latents[path.name]
    if model is not None:
        t = time.perf_counter()
        enc = LatentCodec(8).encode(model.encode(rgb[None])[0])
        rec["t_latent_encode"] = time.perf_counter() - t
        back, rec["t_latent_decode"] = _timed(decode_latent, model, LatentCodec(8).decode(enc), rgb.shape[:2])
        rec["latent_check"] = [compressed_size(enc.data), float(psnr(rgb, back))]
    for floor in FLOORS:
        found, seconds = _timed(kept.search_lossy, rgb, floor, settings.lossy_jxl_effort)
        rec[f"t_lossy_search_{floor:g}"] = seconds
        rec[f"lossy_{floor:g}"] = None if found is None else [len(found.data), found.psnr, found.distance]
        if found is not None and floor == FLOORS[-1]:
            _, rec["t_lossy_read"] = _timed(kept.lossy_to_png, found.data, False, [])
    return rec


def apply_policy(recs: list[dict], fmt: str, lossy: bool, floor: float, ratio: float) -> dict:
    """Totals of one policy: stored bytes, DRR, counts/bytes by representation, PSNR."""
    stored, source, psnrs, by = 0, 0, [], {}
    for r in recs:
        copy = Option(r["jxl_format"], r["jxl"]) if fmt == "jxl" else Option("png", r["png"])
        options = [copy]
        if r["candidate"] and r["latent"] is not None:
            options.append(Option("latent", r["latent"], r["latent_psnr"]))
        found = r.get(f"lossy_{floor:g}") if r["candidate"] else None
        if lossy and found:
            options.append(Option("jxl-lossy", found[0], found[1]))
        win = choose(options, floor, ratio)
        stored += win.bytes
        source += r["png"]
        n, b = by.get(win.representation, (0, 0))
        by[win.representation] = (n + 1, b + win.bytes)
        if np.isfinite(win.psnr):
            psnrs.append(win.psnr)
    return {"stored": stored, "drr": 1 - stored / source, "by": by,
            "psnr_mean": float(np.mean(psnrs)) if psnrs else None, "psnr_min": float(np.min(psnrs)) if psnrs else None}


def per_mp(recs: list[dict], key: str) -> str:
    rows = [(r[key], r["mp"]) for r in recs if r.get(key) is not None]
    return f"{sum(t for t, _ in rows) / sum(m for _, m in rows):.2f}" if rows else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", default="../shared/corpus/ai-png")
    ap.add_argument("--latents", required=True, help="archive of a default migration of SRC, or docs/migration.md")
    ap.add_argument("--time-latents", type=int, default=0, metavar="N")
    ap.add_argument("--weights", default="../shared/models/taef2")
    ap.add_argument("--cache", default="kept_formats_cache.json")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=0.0, help="stop measuring new images after S seconds (0 = all)")
    args = ap.parse_args()
    settings = JobSettings()
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    paths = sorted(Path(args.src).glob("*.png"))
    random.Random(0).shuffle(paths)
    paths = sorted(paths, key=lambda p: p.name not in cache)[: args.limit or None]
    latents = load_latents(args.latents)
    timed = sum(1 for r in cache.values() if "t_latent_encode" in r)
    started = time.perf_counter()
    for path in paths:
        if path.name in cache:
            continue
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            break
        model = None
        if timed < args.time_latents and pngio.probe(path.read_bytes()).pixels <= 1_100_000:
            from lbdask.models import load_model
            model = load_model("taef2", weights=args.weights, device="cpu")
            timed += 1
        t = time.perf_counter()
        cache[path.name] = measure(path, settings, latents, model)
        print(f"{path.name}: {time.perf_counter() - t:.1f} s", flush=True)
        cache_path.write_text(json.dumps(cache, indent=1))
    recs = [cache[p.name] for p in paths if p.name in cache]
    source = sum(r["png"] for r in recs)
    print(f"\n{len(recs)} of {len(paths)} PNGs under {args.src}, {source:,} bytes; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{datetime.date.today()}; TAEF2 fp32 8-bit one-shot latents; jxl effort {settings.jxl_effort}, "
          f"lossy search effort {settings.lossy_jxl_effort}\n")
    print("| policy | stored bytes | DRR | latent | png | jxl | jxl-lossy | PSNR mean (dB) | PSNR min (dB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, fmt, lossy, floor in POLICIES:
        p = apply_policy(recs, fmt, lossy, floor, settings.max_latent_ratio)
        cells = [f"{p['by'][k][0]} ({p['by'][k][1] / 1e6:.1f} MB)" if k in p["by"] else "0"
                 for k in ("latent", "png", "jxl", "jxl-lossy")]
        db = [f"{v:.2f}" if v is not None else "-" for v in (p["psnr_mean"], p["psnr_min"])]
        print(f"| {label} | {p['stored']:,} | {p['drr']:.3f} | " + " | ".join(cells) + f" | {db[0]} | {db[1]} |")
    jxl_ok = [r for r in recs if r["jxl_format"] == "jxl"]
    print(f"\njxl copies used for {len(jxl_ok)} of {len(recs)} images; "
          f"{sum(r['jxl'] for r in jxl_ok):,} bytes for {sum(r['png'] for r in jxl_ok):,} PNG bytes "
          f"({1 - sum(r['jxl'] for r in jxl_ok) / max(1, sum(r['png'] for r in jxl_ok)):.1%} fewer); "
          + "; ".join(f"{r['id']}: {r['jxl_note']}" for r in recs if r["jxl_note"]))
    print("\nseconds per megapixel (mean over the images measured):\n")
    print("| format | encode / store | read back to PNG |")
    print("|---|---:|---:|")
    print(f"| png (kept bytes as they are; PNG decode / Pillow encode of RGB) | {per_mp(recs, 't_png_encode')} | {per_mp(recs, 't_png_decode')} |")
    print(f"| jxl lossless (encode + decode-and-compare, as the migration does) | {per_mp(jxl_ok, 't_jxl_keep')} | {per_mp(recs, 't_jxl_read')} |")
    for floor in FLOORS:
        print(f"| jxl lossy search to {floor:g} dB | {per_mp(recs, f't_lossy_search_{floor:g}')} | "
              f"{per_mp(recs, 't_lossy_read') if floor == FLOORS[-1] else ''} |")
    print(f"| latent TAEF2 8-bit (encode + quantise / decode; {sum('t_latent_encode' in r for r in recs)} images) "
          f"| {per_mp(recs, 't_latent_encode')} | {per_mp(recs, 't_latent_decode')} |")
    checks = [(r["id"], r["latent"], r["latent_psnr"], *r["latent_check"]) for r in recs if r.get("latent_check")]
    if checks:
        print("\nlatents re-encoded here vs the figures used (bytes, PSNR): "
              + "; ".join(f"{i}: {a:,} / {b:.2f} dB vs {c:,} / {d:.2f} dB" for i, a, b, c, d in checks))


if __name__ == "__main__":
    main()
