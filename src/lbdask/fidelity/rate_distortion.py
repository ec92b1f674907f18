"""Rate-distortion measurement: bytes per image against PSNR/SSIM, latents vs conventional codecs.

Migrating a PNG archive to latents is lossy; this module measures what each storage
choice costs and keeps, on the same center crops: latents at each precision and number
of refinement steps (quantisation-aware, see `lbdask.latent.refine`), WebP, JPEG XL and PNG, the
lossy fallback's searched JPEG XL and/or AVIF, and per PSNR floor which representation the
migration's chooser would store (`where_each_wins`).
The "generated" variant decodes the model's own latents of the crops and uses those
decodes as sources: the case of an archive whose images the matching VAE produced.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lbdask.errors import InputError, NotFoundError
from lbdask.fidelity.grid import DEFAULT_BITS, DEFAULT_FLOORS, DEFAULT_STEPS, REFINE_BITS
from lbdask.fidelity.wins import LOSSY_ROWS, lossy_method, where_each_wins, wins_table
from lbdask.image import pngio
from lbdask.image.kept import LOSSY_POLICIES, lossy_decode, search_fallback
from lbdask.image.quality import psnr, ssim
from lbdask.latent.codec import LatentCodec, compressed_size


@dataclass
class Source:
    """One test image: its name and uint8 RGB pixels (a center crop)."""

    name: str
    rgb: np.ndarray


@dataclass
class Measurement:
    """One method on one image: stored bytes and fidelity of what a reader gets back."""

    method: str
    family: str          # "latent" | "webp" | "jpegxl" | "avif" | "png"
    image: str
    bytes: int
    psnr: float
    ssim: float


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central size x size square of an image at least that large."""
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def load_sources(src: str | Path, crop: int, limit: int | None) -> list[Source]:
    """Center crops of the RGB PNGs in `src` (sorted by name) that are at least crop x crop.

    Images with alpha, palette or grey modes, and files that are not valid PNGs, are
    skipped: the report compares codecs on the RGB images a latent archive stores.
    """
    folder = Path(src)
    if not folder.is_dir():
        raise NotFoundError(f"source folder {folder} does not exist")
    sources: list[Source] = []
    for path in sorted(folder.rglob("*.png")):
        data = path.read_bytes()
        try:
            info = pngio.probe(data)
            if info.mode != "RGB" or info.has_alpha or info.bit_depth != 8 or min(info.width, info.height) < crop:
                continue
            rgb, _alpha = pngio.decode(data, max_pixels=info.pixels)
        except InputError:
            continue
        sources.append(Source(path.relative_to(folder).as_posix(), center_crop(rgb, crop)))
        if limit is not None and len(sources) >= limit:
            break
    if not sources:
        raise InputError(f"no 8-bit RGB PNG of at least {crop}x{crop} pixels under {folder}")
    return sources


def generate_sources(model, sources: Sequence[Source], out_dir: str | Path | None = None) -> list[Source]:
    """Sources produced by the model's own decoder: decode(encode(crop)), saved as 8-bit PNG.

    With `out_dir` the PNGs are written there, so the set can be reused as a source folder.
    """
    images = np.stack([s.rgb for s in sources])
    decoded = model.decode(model.encode(images), size=images.shape[1:3])
    generated = [Source(s.name, np.ascontiguousarray(d)) for s, d in zip(sources, decoded)]
    if out_dir is not None:
        for g in generated:
            path = Path(out_dir) / g.name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(g.rgb).save(path)
    return generated


def _pillow_roundtrip(rgb: np.ndarray, fmt: str, **params) -> tuple[int, np.ndarray]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **params)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return len(data), np.asarray(im.convert("RGB"))


def _jpegxl_roundtrip(rgb: np.ndarray, **params) -> tuple[int, np.ndarray]:
    import imagecodecs

    data = imagecodecs.jpegxl_encode(rgb, **params)
    return len(data), np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


#: Conventional codecs: name -> (family, rgb -> (stored bytes, decoded rgb)).
CONVENTIONAL: dict[str, tuple[str, Callable[[np.ndarray], tuple[int, np.ndarray]]]] = {
    "webp q90": ("webp", lambda rgb: _pillow_roundtrip(rgb, "WEBP", quality=90, method=6)),
    "webp q95": ("webp", lambda rgb: _pillow_roundtrip(rgb, "WEBP", quality=95, method=6)),
    "jpegxl d1.0": ("jpegxl", lambda rgb: _jpegxl_roundtrip(rgb, distance=1.0)),
    "jpegxl lossless": ("jpegxl", lambda rgb: _jpegxl_roundtrip(rgb, lossless=True)),
    "png max": ("png", lambda rgb: _pillow_roundtrip(rgb, "PNG", optimize=True, compress_level=9)),
}


def measure_conventional(sources: Sequence[Source]) -> list[Measurement]:
    """Every conventional codec on every source."""
    rows = []
    for method, (family, roundtrip) in CONVENTIONAL.items():
        for s in sources:
            size, back = roundtrip(s.rgb)
            rows.append(Measurement(method, family, s.name, size, psnr(s.rgb, back), ssim(s.rgb, back)))
    return rows


def measure_lossy_search(sources: Sequence[Source], floors: Sequence[float], policy: str = "jxl") -> list[Measurement]:
    """Each lossy format of `policy` (jxl, avif: 8 or 10 bit, best: both) as the migration's search
    finds it for each floor, where one meets the floor."""
    rows = []
    for fmt in LOSSY_POLICIES[policy]:
        for floor in floors:
            for s in sources:
                found = search_fallback(s.rgb, fmt, floor)
                if found is not None:
                    back = lossy_decode(found.data, found.format)
                    rows.append(Measurement(lossy_method(floor, fmt), LOSSY_ROWS[fmt][0], s.name, len(found.data),
                                            found.psnr, ssim(s.rgb, back)))
    return rows


def latent_bytes(codec: LatentCodec, z: np.ndarray) -> int:
    """Bytes the archive keeps for one latent: pcodec payload plus the float32 lo/hi range."""
    enc = codec.encode(z)
    return compressed_size(enc.data) + 8 * len(enc.lo or [])


def measure_latents(model, sources: Sequence[Source], bits_list: Sequence[int] = DEFAULT_BITS,
                    steps_list: Sequence[int] = DEFAULT_STEPS, refine_bits: int = REFINE_BITS,
                    lr: float = 0.02, on_step: Callable[[], None] | None = None) -> tuple[list[Measurement], dict]:
    """Latents at each precision and refinement step count; also returns the time spent.

    One quantisation-aware refinement run (for `refine_bits`), checkpointed at each step
    count, so the 100-step figure costs 100 steps, not 140; every checkpoint is then
    quantised at each precision in `bits_list` and decoded. On CPU this keeps the report
    to one refinement per image instead of one per precision.
    """
    from lbdask.latent.refine import decode_cropped, quantise_roundtrip, refine_latents  # torch

    images = [s.rgb for s in sources]
    started = time.perf_counter()
    z0 = model.encode(np.stack(images))
    timing = {"encode_seconds": time.perf_counter() - started}
    result = refine_latents(model, LatentCodec(refine_bits), images, z0, max(steps_list), lr=lr,
                            checkpoints=steps_list, on_step=on_step)
    timing["refine_seconds"] = result.seconds
    timing["refine_bits"] = refine_bits
    rows = []
    for bits in bits_list:
        codec = LatentCodec(bits)
        for steps in steps_list:
            z = result.checkpoints[steps]
            decoded = decode_cropped(model, quantise_roundtrip(codec, z), images)
            for s, zi, back in zip(sources, z, decoded):
                rows.append(Measurement(f"latent {bits}-bit, {steps} steps", "latent", s.name,
                                        latent_bytes(codec, zi), psnr(s.rgb, back), ssim(s.rgb, back)))
    return rows, timing


def summarise(rows: Sequence[Measurement], pixels: int) -> list[dict]:
    """Per method: mean bytes/image, bits per pixel, mean/min PSNR, mean SSIM (in first-seen order)."""
    methods = list(dict.fromkeys(r.method for r in rows))
    table = []
    for method in methods:
        mine = [r for r in rows if r.method == method]
        size = float(np.mean([r.bytes for r in mine]))
        table.append({
            "method": method,
            "family": mine[0].family,
            "images": len(mine),
            "bytes_mean": size,
            "bpp": 8 * size / pixels,
            "psnr_mean": float(np.mean([r.psnr for r in mine])),
            "psnr_min": float(np.min([r.psnr for r in mine])),
            "ssim_mean": float(np.mean([r.ssim for r in mine])),
        })
    return table


def markdown_table(table: Sequence[dict]) -> str:
    """The summary as a GitHub markdown table."""
    lines = ["| method | bytes/image | bits/pixel | PSNR mean (dB) | PSNR min (dB) | SSIM mean |",
             "|---|---:|---:|---:|---:|---:|"]
    for t in table:
        lines.append(f"| {t['method']} | {t['bytes_mean']:,.0f} | {t['bpp']:.2f} | {t['psnr_mean']:.2f} "
                     f"| {t['psnr_min']:.2f} | {t['ssim_mean']:.4f} |")
    return "\n".join(lines)


def plot(table: Sequence[dict], path: str | Path, title: str) -> None:
    """Bits per pixel vs PSNR and vs SSIM: one line per latent precision (through its step
    counts), one marker per conventional codec; lossless codecs (infinite PSNR) as
    vertical dashed lines on the PSNR panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in ((axes[0], "psnr_mean", "mean PSNR (dB)"), (axes[1], "ssim_mean", "mean SSIM")):
        latent_groups: dict[str, list[dict]] = {}
        for t in table:
            if t["family"] == "latent":
                latent_groups.setdefault(t["method"].split(",")[0], []).append(t)
            elif np.isinf(t[key]):
                ax.axvline(t["bpp"], linestyle="--", color="grey", alpha=0.7)
                ax.annotate(t["method"], (t["bpp"], 0.02), xycoords=("data", "axes fraction"),
                            rotation=90, fontsize=8, xytext=(-10, 0), textcoords="offset points")
            else:
                ax.scatter(t["bpp"], t[key], marker="s", s=40)
                ax.annotate(t["method"], (t["bpp"], t[key]), textcoords="offset points", xytext=(5, 3), fontsize=8)
        for name, group in latent_groups.items():
            steps = "/".join(t["method"].split(", ")[1].split()[0] for t in group)
            ax.plot([t["bpp"] for t in group], [t[key] for t in group], "o-", label=f"{name}, {steps} refinement steps")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("bits per pixel (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _json_safe(value):
    """Strict JSON: infinite PSNR (lossless) becomes null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def rate_distortion_report(model, sources: Sequence[Source], out_dir: str | Path, title: str,
                           bits_list: Sequence[int] = DEFAULT_BITS,
                           steps_list: Sequence[int] = DEFAULT_STEPS, refine_bits: int = REFINE_BITS,
                           on_step: Callable[[], None] | None = None, floors: Sequence[float] = DEFAULT_FLOORS,
                           lossy_fallback: str = "jxl") -> dict:
    """Measure everything on `sources`, write fidelity.json / fidelity.md / fidelity.png to `out_dir`.

    `lossy_fallback` (jxl, avif or best, as the migration's option) picks the lossy formats
    searched at each floor and offered to the chooser.

    `on_step` is called after each refinement step, the long part (progress bars)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    latent_rows, timing = measure_latents(model, sources, bits_list, steps_list, refine_bits, on_step=on_step)
    rows = latent_rows + measure_conventional(sources) + measure_lossy_search(sources, floors, lossy_fallback)
    h, w = sources[0].rgb.shape[:2]
    table = summarise(rows, h * w)
    variants = [f"latent {refine_bits}-bit, {s} steps" for s in sorted({min(steps_list), max(steps_list)})]
    wins = where_each_wins(rows, floors, variants)
    report = {
        "title": title,
        "model": model.name,
        "model_fingerprint": model.fingerprint,
        "device": str(model.device),
        "images": [s.name for s in sources],
        "crop": [h, w],
        "timing": timing,
        "lossy_fallback": lossy_fallback,
        "summary": table,
        "where_each_wins": wins,
        "per_image": [asdict(r) for r in rows],
    }
    (out / "fidelity.json").write_text(json.dumps(_json_safe(report), indent=1))
    (out / "fidelity.md").write_text(f"## {title}\n\n{markdown_table(table)}\n\n"
                                     f"### What the migration's chooser stores\n\n{wins_table(wins)}\n")
    plot(table, out / "fidelity.png", title)
    return report
