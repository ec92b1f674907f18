"""Rate of latents: one-shot, float-refined and quantisation-aware (QAT) latents at 8 and 6 bits
on matching-VAE crops (corpus crops decoded by TAEF2) or on the corpus crops themselves, against
AVIF (8 and 10 bit) and lossy JPEG XL at equal or better PSNR, image by image (issue 27,
docs/fidelity.md).

    python benchmarks/latent_rate.py --crop 512 --limit 4 --steps 30 --out /tmp/latent_rate

Writes latent_rate.json and latent_rate.md into --out (after each run: a stopped run keeps its
finished rows) and the plot to --plot; `--real` measures the corpus crops themselves. `--panel
TITLE A.json B.json` (repeatable) only draws one panel per crop set from saved results. With
`--cost-steps 0 10 30 --cost-bits 8 6` it only times what each setting costs per megapixel
(encode, refinement through the quantiser, the stored latent's decode) and prints that table.
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import imagecodecs
import numpy as np
from corpus_crops import crop_parser  # benchmarks/ is on the path when a script here runs

from lbdask.fidelity.rate_distortion import generate_sources, latent_bytes, load_sources
from lbdask.image import avif
from lbdask.image.kept import lossy_decode, search_avif, search_lossy
from lbdask.image.quality import psnr
from lbdask.latent.codec import LatentCodec
from lbdask.latent.refine import quantised_psnr, refine_latents
from lbdask.models import load_model

SWEEP_AVIF = (50, 60, 70, 80, 85, 90, 94, 97, 99)
#: libavif speed of the migration's lossy search (`lossy_avif_speed`).
AVIF_SPEED = 8
SWEEP_JXL = (3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1)


def avif_roundtrip(rgb: np.ndarray, level: int, bits: int) -> tuple[int, float]:
    """Bytes and PSNR (on 8-bit pixels) of AVIF at `level` and 8 or 10 bits, as the migration writes it."""
    data = avif.encode(rgb, level, bits, AVIF_SPEED)
    return len(data), psnr(rgb, avif.decode(data))


def best_conventional(rgb: np.ndarray, floor: float) -> dict:
    """Bytes of AVIF 8/10 bit and lossy JPEG XL found by the migration's searches at >= `floor` dB."""
    found = {"avif8": search_avif(rgb, floor, 8, AVIF_SPEED), "avif10": search_avif(rgb, floor, 10, AVIF_SPEED),
             "jxl": search_lossy(rgb, floor)}
    return {k: None if v is None else len(v.data) for k, v in found.items()}


#: Refinement runs: name -> (bits it is quantisation-aware for, mode, precisions its latent is stored at).
RUNS = {"qat8": (8, "qat", (8,)), "qat6": (6, "qat", (6,)), "float": (8, "float", (8, 6))}


def refine_run(model, images: np.ndarray, z0: np.ndarray, steps: int, name: str) -> tuple[dict, float, float]:
    """One refinement run's variants (name -> (bits, z)), its wall and its process-CPU seconds."""
    bits, mode, stored = RUNS[name]
    (res, _wall), cpu = _timed(partial(refine_latents, mode=mode), model, LatentCodec(bits), images, z0, steps)
    print(f"{name}: {res.seconds:.0f} s wall, {cpu:.0f} s CPU, stored PSNR {np.round(res.psnr_final, 2)}", flush=True)
    return {f"{mode} {steps} steps {b}": (b, res.z) for b in stored}, res.seconds, cpu


def score(model, images: np.ndarray, names: list[str], variants: dict) -> list[dict]:
    """Per image and variant: latent bytes, stored PSNR, and the conventional codecs' bytes at that PSNR."""
    rows = []
    for variant, (bits, z) in variants.items():
        codec = LatentCodec(bits)
        scores = quantised_psnr(model, codec, images, z)
        for i, name in enumerate(names):
            conv = best_conventional(images[i], float(scores[i]))
            rows.append({"variant": variant, "image": name, "bytes": latent_bytes(codec, z[i]),
                         "psnr": float(scores[i]), **conv})
        print(f"{variant}: PSNR {np.round(scores, 2)}, conventional searched", flush=True)
    return rows


def measure(model, images: np.ndarray, names: list[str], steps: int, out: Path, runs: list[str],
            one_shot: bool = True) -> dict:
    """Refinement runs first, then the one-shot latents (unless not `one_shot`), then the codecs' sweeps (for the plot).

    After each step the result so far goes to `out`/latent_rate.json ("complete": false until
    the end), so a stopped run keeps its finished rows; the latents go to `out`/latents.npz
    (with the crops) for later analysis."""
    megapixels = images.shape[1] * images.shape[2] / 1e6
    result = {"megapixels_per_image": megapixels, "rows": [], "sweeps": None, "steps": steps, "complete": False,
              "refine_seconds_per_megapixel": {}, "refine_cpu_seconds_per_megapixel": {}}
    z0 = model.encode(images)
    latents = {"one-shot 8": (8, z0), "one-shot 6": (6, z0)}
    for name in runs:
        variants, wall, cpu = refine_run(model, images, z0, steps, name)
        result["refine_seconds_per_megapixel"][name] = wall / (len(names) * megapixels)
        result["refine_cpu_seconds_per_megapixel"][name] = cpu / (len(names) * megapixels)
        latents.update(variants)
        save_latents(out, images, names, latents)
        result["rows"] += score(model, images, names, variants)
        write_result(out, result)
    if one_shot:
        result["rows"] += score(model, images, names, {k: latents[k] for k in ("one-shot 8", "one-shot 6")})
        write_result(out, result)
    result["sweep_images"] = names
    result["sweeps"] = {"avif8": [[avif_roundtrip(im, q, 8) for q in SWEEP_AVIF] for im in images],
                        "avif10": [[avif_roundtrip(im, q, 10) for q in SWEEP_AVIF] for im in images],
                        "jxl": [[jxl_roundtrip(im, d) for d in SWEEP_JXL] for im in images]}
    return result


def save_latents(out: Path, images: np.ndarray, names: list[str], latents: dict) -> None:
    """The crops and every variant's float latent so far, keys with "_" for " " (latent_coders.py reads them)."""
    np.savez_compressed(out / "latents.npz", images=images, names=np.array(names),
                        **{v.replace(" ", "_"): z for v, (_bits, z) in latents.items()})


def write_result(out: Path, result: dict) -> None:
    """latent_rate.json (and .md once the rows exist) in `out`, rewritten after each finished step."""
    (out / "latent_rate.json").write_text(json.dumps(result, indent=1))
    (out / "latent_rate.md").write_text(markdown(result))


def cost_table(model, images: np.ndarray, steps_list: list[int], bits_list: list[int]) -> str:
    """Wall and process-CPU seconds per megapixel of encode + refinement + verify decode, per setting."""
    megapixels = images.shape[0] * images.shape[1] * images.shape[2] / 1e6
    lines = ["| bits | steps | encode s/MP | refine s/MP | decode s/MP | total s/MP (wall) | total CPU s/MP | stored PSNR mean |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for bits in bits_list:
        for steps in steps_list:
            (z0, enc_wall), enc_cpu = _timed(model.encode, images)
            (z, ref_wall), ref_cpu = (z0, 0.0), 0.0
            if steps:
                (res, ref_wall), ref_cpu = _timed(refine_latents, model, LatentCodec(bits), images, z0, steps)
                z = res.z
            (scores, dec_wall), dec_cpu = _timed(quantised_psnr, model, LatentCodec(bits), images, z)
            walls = [t / megapixels for t in (enc_wall, ref_wall, dec_wall)]
            cpu = (enc_cpu + ref_cpu + dec_cpu) / megapixels
            lines.append(f"| {bits} | {steps} | {walls[0]:.1f} | {walls[1]:.1f} | {walls[2]:.1f} | {sum(walls):.1f} | "
                         f"{cpu:.1f} | {np.mean(scores):.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def _timed(fn, *args):
    """fn(*args), its wall seconds, and the process CPU seconds (all threads) it took."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args)
    return (out, time.perf_counter() - wall), time.process_time() - cpu


def jxl_roundtrip(rgb: np.ndarray, distance: float) -> tuple[int, float]:
    """Bytes and PSNR of lossy JPEG XL at `distance` (effort 3, as the migration's search)."""
    data = imagecodecs.jpegxl_encode(rgb, distance=distance, effort=3)
    return len(data), psnr(rgb, lossy_decode(data))


def summary(result: dict) -> list[dict]:
    """Per variant: mean KB/MP, mean PSNR, and the latent's bytes over the best conventional's (mean, max)."""
    mp = result["megapixels_per_image"]
    out = []
    for variant in dict.fromkeys(r["variant"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["variant"] == variant]
        ratios = [r["bytes"] / min(b for b in (r["avif8"], r["avif10"], r["jxl"]) if b is not None)
                  for r in rows if any(r[k] is not None for k in ("avif8", "avif10", "jxl"))] or [float("nan")]
        out.append({"variant": variant, "kb_per_mp": np.mean([r["bytes"] for r in rows]) / 1000 / mp,
                    "psnr": float(np.mean([r["psnr"] for r in rows])), "psnr_min": min(r["psnr"] for r in rows),
                    "ratio_mean": float(np.mean(ratios)), "ratio_max": float(np.max(ratios)),
                    "unreached": sum(all(r[k] is None for k in ("avif8", "avif10", "jxl")) for r in rows)})
    return out


def markdown(result: dict) -> str:
    """The summary table and the per-image table, as in docs/fidelity.md."""
    mp = result["megapixels_per_image"]
    lines = ["| latent | KB/MP | PSNR mean (dB) | PSNR min (dB) | bytes / best conventional, mean | max | images no conventional reaches |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['variant']} | {s['kb_per_mp']:.0f} | {s['psnr']:.2f} | {s['psnr_min']:.2f} | "
              f"{s['ratio_mean']:.2f} | {s['ratio_max']:.2f} | {s['unreached']} |" for s in summary(result)]
    lines += ["", "| latent | image | KB/MP | PSNR | AVIF 8 KB/MP | AVIF 10 KB/MP | JXL KB/MP |", "|---|---|---:|---:|---:|---:|---:|"]
    kb = lambda b: "none" if b is None else f"{b / 1000 / mp:.0f}"
    lines += [f"| {r['variant']} | {r['image']} | {kb(r['bytes'])} | {r['psnr']:.2f} | {kb(r['avif8'])} | "
              f"{kb(r['avif10'])} | {kb(r['jxl'])} |" for r in result["rows"]]
    cpu = result.get("refine_cpu_seconds_per_megapixel", {})
    secs = ", ".join(f"{k} {v:.0f} s/MP wall" + (f" ({cpu[k]:.0f} CPU s/MP)" if k in cpu else "")
                     for k, v in result["refine_seconds_per_megapixel"].items())
    tail = ["", f"Refinement ({result['steps']} steps) per megapixel: {secs}"] if secs else []
    return "\n".join(lines + tail) + "\n"


def merge(results: list[dict], title: str) -> dict:
    """One result from runs on the same crop size made apart (QAT and float runs, one process per
    crop): all their rows, each image's codec sweeps once.

    A (variant, image) row of a later result replaces an earlier one; results of other crop
    sizes or step counts are refused."""
    first = results[0]
    if any((r["megapixels_per_image"], r["steps"]) != (first["megapixels_per_image"], first["steps"]) for r in results):
        raise ValueError("only results of the same crop size and step count merge")
    rows = {(row["variant"], row["image"]): row for r in results for row in r["rows"]}
    seconds = {key: {k: v for r in results for k, v in r.get(key, {}).items()}
               for key in ("refine_seconds_per_megapixel", "refine_cpu_seconds_per_megapixel")}
    swept = {name: per for r in results for name, per in _sweeps_by_image(r).items()}
    images = list(swept)
    sweeps = {codec: [swept[name][codec] for name in images] for codec in ("avif8", "avif10", "jxl")} if swept else None
    return {**first, **seconds, "rows": list(rows.values()), "title": title, "sweeps": sweeps, "sweep_images": images,
            "complete": all(r.get("complete", True) for r in results)}


def _sweeps_by_image(result: dict) -> dict[str, dict]:
    """image -> codec -> its sweep; results written before "sweep_images" swept their rows' images in order."""
    if not result.get("sweeps"):
        return {}
    names = result.get("sweep_images") or list(dict.fromkeys(r["image"] for r in result["rows"]))
    return {name: {codec: pts[i] for codec, pts in result["sweeps"].items()} for i, name in enumerate(names)}


#: Marker and colour of each latent kind in the plot (variant names start with the kind); 6 bits hollow.
MARKERS = {"one-shot": ("X", "black"), "float": ("^", "tab:purple"), "qat": ("s", "tab:red")}


def plot(panels: list[dict], path: Path) -> None:
    """Bytes per megapixel against PSNR, one panel per result: latent variants (means) over the codecs' mean sweeps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, result in zip(axes[0], panels):
        mp = result["megapixels_per_image"]
        for name, label in (("avif8", "AVIF 8-bit"), ("avif10", "AVIF 10-bit"), ("jxl", "JPEG XL lossy")):
            pts = np.array(result["sweeps"][name], dtype=np.float64)  # (images, settings, 2)
            ax.plot(pts[..., 0].mean(axis=0) / 1000 / mp, pts[..., 1].mean(axis=0), "-o", ms=3, label=label)
        for s in summary(result):
            marker, colour = MARKERS[s["variant"].split(" ")[0]]
            ax.plot(s["kb_per_mp"], s["psnr"], marker, ms=8, color=colour, label=f"latent {s['variant']} bits",
                    mfc="none" if s["variant"].endswith(" 6") else colour)
        ax.axvline(200, color="grey", ls=":", lw=1)
        ax.axhline(45, color="grey", ls=":", lw=1)
        ax.set_xlabel("KB per megapixel")
        ax.set_ylabel("PSNR (dB), mean over crops")
        ax.set_title(result.get("title", ""), fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = crop_parser(__doc__, limit=4)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--runs", nargs="*", choices=list(RUNS), default=list(RUNS), help="refinement runs (default all)")
    p.add_argument("--one-shot", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the one-shot latents (off: another process of the same crops does)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N crops (one process per crop)")
    p.add_argument("--real", action="store_true", help="the corpus crops themselves, not their TAEF2 decodes")
    p.add_argument("--out", default="/tmp/latent_rate")
    p.add_argument("--plot", default=None, help="where the plot goes (default: OUT/latent_rate.png; with --panel: "
                   "docs/img/latent-rate-512.png, the figure of docs/fidelity.md)")
    p.add_argument("--cost-steps", nargs="+", type=int, help="only time these step counts per megapixel")
    p.add_argument("--cost-bits", nargs="+", type=int, default=[8, 6], help="precisions for --cost-steps")
    p.add_argument("--panel", nargs="+", action="append", metavar="TITLE JSON",
                   help="only plot: a panel titled TITLE from these latent_rate.json of one crop set (repeatable)")
    args = p.parse_args()
    if args.panel:
        panels = [merge([json.loads(Path(f).read_text()) for f in files], title) for title, *files in args.panel]
        plot(panels, Path(args.plot or "docs/img/latent-rate-512.png"))
        print("\n".join(f"### {m['title']}\n\n{markdown(m)}" for m in panels))
        return
    model = load_model("taef2", weights=args.weights, device="cpu")
    sources = load_sources(args.src, args.crop, args.skip + args.limit)[args.skip :]
    sources = sources if args.real else generate_sources(model, sources)
    if args.cost_steps:
        print(cost_table(model, np.stack([s.rgb for s in sources]), args.cost_steps, args.cost_bits))
        return
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(model, np.stack([s.rgb for s in sources]), [s.name for s in sources], args.steps, out, args.runs,
                     args.one_shot)
    kind = "real corpus" if args.real else "TAEF2-generated"
    result.update(wall_seconds=time.perf_counter() - started, complete=True,
                  title=f"{kind} {args.crop} px crops ({len(sources)}), {args.steps} refinement steps, CPU")
    write_result(out, result)
    plot([result], Path(args.plot) if args.plot else out / "latent_rate.png")
    print(markdown(result))

if __name__ == "__main__":
    main()
