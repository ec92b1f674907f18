"""Where each representation wins: the migration's chooser applied to measured rate-distortion rows.

`lbdask fidelity` measures every codec on the same crops; this module asks
`lbdask.fidelity.chooser.choose` - the rule `lbdask migrate` applies per image - which one it would
store at each PSNR floor, so the report shows the policy's outcome, not just the curves.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lbdask.fidelity.chooser import Option, choose

#: Lossy formats of the migration's fallback: the prefix of their measured rows and their representation.
LOSSY_ROWS = {"jxl": ("jpegxl", "jxl-lossy"), "avif": ("avif", "avif-lossy")}


def lossy_method(floor: float, fmt: str = "jxl") -> str:
    """Name of the measured method "lossy `fmt` as the migration's search finds it for `floor`"."""
    return f"{LOSSY_ROWS[fmt][0]} searched >= {floor:g} dB"


def where_each_wins(rows: Sequence[Any], floors: Sequence[float], latent_methods: Sequence[str]) -> list[dict]:
    """Per floor and latent variant: what `lbdask.fidelity.chooser.choose` stores for each image.

    Options per image: the PNG ("png max"), lossless JPEG XL, the latent variant and each lossy
    format measured for that floor (JPEG XL, AVIF: those of `--lossy-fallback`), as
    `--kept-format jxl --lossy-fallback ...` weighs them. `lossy` names the lossy representations offered.
    """
    by = {(r.method, r.image): r for r in rows}
    images = list(dict.fromkeys(r.image for r in rows))
    out = []
    for floor in floors:
        lossy = {lossy_method(floor, fmt): name for fmt, (_prefix, name) in LOSSY_ROWS.items()
                 if any(r.method == lossy_method(floor, fmt) for r in rows)}
        for latent in latent_methods:
            winners = {}
            for image in images:
                options = [Option("png", by["png max", image].bytes), Option("jxl", by["jpegxl lossless", image].bytes)]
                for method, name in ((latent, "latent"), *lossy.items()):
                    if (method, image) in by:
                        options.append(Option(name, by[method, image].bytes, by[method, image].psnr))
                winners[image] = choose(options, floor)
            out.append({"min_psnr": floor, "latent": latent, "lossy": sorted(lossy.values()),
                        "wins": dict(Counter(w.representation for w in winners.values())),
                        "bytes_mean": float(np.mean([w.bytes for w in winners.values()])),
                        "winners": {k: w.representation for k, w in winners.items()}})
    return out


def wins_table(wins: Sequence[dict]) -> str:
    """`where_each_wins` as a markdown table: images won by each representation (lossy ones as offered)."""
    offered = {name for w in wins for name in w.get("lossy", ())}
    names = ("latent", "png", "jxl") + tuple(n for _p, n in LOSSY_ROWS.values() if n in offered)
    lines = ["| min PSNR (dB) | latent variant | " + " | ".join(names) + " | stored bytes/image |",
             "|---:|---|" + "---:|" * (len(names) + 1)]
    for w in wins:
        lines.append(f"| {w['min_psnr']:g} | {w['latent']} | " + " | ".join(str(w["wins"].get(n, 0)) for n in names)
                     + f" | {w['bytes_mean']:,.0f} |")
    return "\n".join(lines)
