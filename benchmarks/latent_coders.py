"""Lossless coders for the quantised latent integers: pcodec (what the store writes) against
entropy coders driven by per-channel distributions fitted to each latent (issue 27).

    PYTHONPATH=src:/tmp/latent-venv/lib/python3.11/site-packages \\
        python benchmarks/latent_coders.py --crop 512 --limit 8 --bits 8 6

Coders (every one is decoded again and checked equal to its input before it is counted):
- pcodec: `lbdask.latent.codec.compressed_size`, the bytes a shard keeps today;
- gauss-iid: rANS (constriction) with a quantised Gaussian per channel (mean, std);
- hist-iid: rANS with each channel's own histogram;
- laplace-ctx: rANS with a quantised Laplace per value whose mean is a linear prediction from
  the causal neighbours in its channel (up, left, up-left, up-right) and scale grows with
  their local gradient, both fitted per channel by least squares;
- laplace-ctx+ch: the same, with the values of the earlier channels at the same position
  as further predictors.
Side information (the fitted parameters an archive would store per latent) is counted apart.
`constriction` is not a project dependency: install it into a separate venv and put its
site-packages on PYTHONPATH. `--latents NPZ` codes the latents that benchmarks/latent_rate.py
saved (refined ones) instead of one-shot encodes of the crops.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable

import constriction
import numpy as np
from corpus_crops import crop_parser  # benchmarks/ is on the path when a script here runs

from lbdask.fidelity.rate_distortion import load_sources
from lbdask.latent.codec import LatentCodec, compressed_size, pcodec

#: Fixed-point fraction bits of the prediction coefficients: integer predictions are exact,
#: so encoder and decoder compute the same model whatever the summation order.
FRACTION_BITS = 10
MIN_SCALE = 0.2
_MODELS = constriction.stream.model


def pcodec_coder(q: np.ndarray, bits: int) -> tuple[int, int, np.ndarray]:
    """(payload bytes, side bytes, decoded) of the store's pcodec."""
    data = pcodec().encode(np.ascontiguousarray(q.astype(np.uint16)))
    assert len(data) == compressed_size(q.astype(np.uint16))
    return len(data), 0, np.asarray(pcodec().decode(data)).reshape(q.shape)


def gauss_iid(q: np.ndarray, bits: int) -> tuple[int, int, np.ndarray]:
    """Quantised Gaussian per channel (float32 mean and std: 8 bytes of side information each)."""
    levels = (1 << bits) - 1
    mean = q.mean(axis=(1, 2)).astype(np.float32).astype(np.float64)
    std = np.maximum(q.std(axis=(1, 2)), MIN_SCALE).astype(np.float32).astype(np.float64)
    model = _MODELS.QuantizedGaussian(0, levels)
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(q.shape[0])):
        coder.encode_reverse(q[c].ravel().astype(np.int32), model, np.full(q[c].size, mean[c]), np.full(q[c].size, std[c]))
    words = coder.get_compressed()
    dec = constriction.stream.stack.AnsCoder(words)
    out = np.stack([dec.decode(model, np.full(q[c].size, mean[c]), np.full(q[c].size, std[c])) for c in range(q.shape[0])])
    return 4 * len(words), 8 * q.shape[0], out.reshape(q.shape)


def hist_iid(q: np.ndarray, bits: int) -> tuple[int, int, np.ndarray]:
    """Each channel's histogram as its model; side information = the count table through pcodec."""
    counts = np.stack([np.bincount(ch.ravel(), minlength=1 << bits) for ch in q]).astype(np.float64)
    models = [_MODELS.Categorical(cnt, perfect=False) for cnt in counts]
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(q.shape[0])):
        coder.encode_reverse(q[c].ravel().astype(np.int32), models[c])
    words = coder.get_compressed()
    dec = constriction.stream.stack.AnsCoder(words)
    out = np.stack([dec.decode(models[c], q[c].size) for c in range(q.shape[0])])
    return 4 * len(words), compressed_size(counts.astype(np.uint16)), out.reshape(q.shape)


def _features(padded: np.ndarray, c: int, i: np.ndarray, j: np.ndarray, cross: bool) -> list:
    """Causal predictors of channel c at positions (i, j) of the padded array (value (c, i, j)
    sits at padded[c, i + 1, j + 1]): up, left, up-left, up-right, then earlier channels if `cross`."""
    ch = padded[c]
    feats = [ch[i, j + 1], ch[i + 1, j], ch[i, j], ch[i, j + 2]]
    if cross:
        feats += [padded[k, i + 1, j + 1] for k in range(c)]
    return feats


def _wavefronts(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Positions by decoding step: all (i, j) with 2i + j = t depend only on earlier steps
    (up-right is 2i - 2 + j + 1 = t - 1), so each step decodes them together."""
    i, j = np.indices((h, w)).reshape(2, -1)
    t = 2 * i + j
    return [(i[t == k], j[t == k]) for k in range(int(t.max()) + 1)]


def _activity(feats: list) -> np.ndarray:
    """Local gradient of the causal neighbours: where it is large, the prediction is worse."""
    return (np.abs(feats[0] - feats[2]) + np.abs(feats[1] - feats[2]) + np.abs(feats[3] - feats[0])).astype(np.float64)


def _params(feats: list, coef: np.ndarray, bias: int, ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (exact: integer fixed point) and scale of the Laplace of each value from its features."""
    fixed = bias + sum(int(k) * f.astype(np.int64) for k, f in zip(coef, feats))
    scale = np.maximum(ab[0] + ab[1] * _activity(feats), MIN_SCALE)
    return (fixed / (1 << FRACTION_BITS)).ravel(), scale.ravel()


def _fit(x: np.ndarray, feats: list) -> tuple[np.ndarray, int, np.ndarray]:
    """Least-squares prediction coefficients (fixed point) and the scale's line against activity."""
    a = np.stack([f.astype(np.float64) for f in feats] + [np.ones(x.size)], axis=1)
    sol, *_ = np.linalg.lstsq(a, x.astype(np.float64), rcond=None)
    fixed = np.rint(sol * (1 << FRACTION_BITS)).astype(np.int64)
    assert np.abs(fixed[:-1]).max(initial=0) < 1 << 15, "coefficient does not fit int16"
    coef, bias = fixed[:-1], int(fixed[-1])
    mean, _ = _params(feats, coef, bias, np.array([1.0, 0.0]))
    b = np.stack([np.ones(x.size), _activity(feats)], axis=1)
    ab, *_ = np.linalg.lstsq(b, np.abs(x - mean), rcond=None)
    return coef, bias, ab.astype(np.float32).astype(np.float64)


def laplace_ctx(q: np.ndarray, bits: int, cross: bool) -> tuple[int, int, np.ndarray]:
    """Context-model coder; side information per channel: int16 coefficients, int32 bias, two float32.

    Symbols go in decoding order (wavefront, then channel, then position), so the decoder can
    compute each step's means and scales from what it has already decoded."""
    levels, (n_ch, h, w) = (1 << bits) - 1, q.shape
    padded = np.full((n_ch, h + 1, w + 2), (levels + 1) // 2, dtype=np.int64)
    padded[:, 1:, 1:-1] = q
    every = np.indices((h, w)).reshape(2, -1)
    fits = [_fit(q[c].ravel(), _features(padded, c, *every, cross)) for c in range(n_ch)]
    steps = [(c, i, j) for i, j in _wavefronts(h, w) for c in range(n_ch)]
    params = [_params(_features(padded, c, i, j, cross), *fits[c]) for c, i, j in steps]
    model = _MODELS.QuantizedLaplace(0, levels)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.concatenate([q[c, i, j] for c, i, j in steps]).astype(np.int32), model,
                         np.concatenate([m for m, _s in params]), np.concatenate([s for _m, s in params]))
    words = coder.get_compressed()
    out = np.full_like(padded, (levels + 1) // 2)
    dec = constriction.stream.stack.AnsCoder(words)
    for c, i, j in steps:
        out[c, i + 1, j + 1] = dec.decode(model, *_params(_features(out, c, i, j, cross), *fits[c]))
    side = sum(2 * len(coef) + 4 + 8 for coef, _b, _ab in fits)
    return 4 * len(words), side, out[:, 1:, 1:-1]


CODERS: dict[str, Callable[[np.ndarray, int], tuple[int, int, np.ndarray]]] = {
    "pcodec": pcodec_coder,
    "gauss-iid": gauss_iid,
    "hist-iid": hist_iid,
    "laplace-ctx": lambda q, bits: laplace_ctx(q, bits, cross=False),
    "laplace-ctx+ch": lambda q, bits: laplace_ctx(q, bits, cross=True),
}


def measure(latents: np.ndarray, bits_list: list[int]) -> list[dict]:
    """Per precision and coder: mean payload and side bytes per latent, checked round trips, seconds."""
    rows = []
    for bits in bits_list:
        quantised = [LatentCodec(bits).encode(z).data.astype(np.int64) for z in latents]
        for name, coder in CODERS.items():
            payload, side, seconds = [], [], 0.0
            for q in quantised:
                started = time.perf_counter()
                size, extra, back = coder(q, bits)
                seconds += time.perf_counter() - started
                if not np.array_equal(np.asarray(back, dtype=np.int64), q):
                    raise AssertionError(f"{name} at {bits} bits did not round-trip")
                payload.append(size)
                side.append(extra)
            rows.append({"bits": bits, "coder": name, "payload": float(np.mean(payload)),
                         "side": float(np.mean(side)), "seconds": seconds / len(quantised)})
            print(f"{bits} bits {name}: {rows[-1]['payload'] + rows[-1]['side']:,.0f} B", flush=True)
    return rows


def markdown(rows: list[dict], megapixels: float) -> str:
    """The table of docs/benchmarks.md: bytes per latent and per megapixel against pcodec."""
    base = {r["bits"]: r["payload"] + r["side"] for r in rows if r["coder"] == "pcodec"}
    lines = ["| bits | coder | payload B/latent | side info B/latent | total KB/MP | vs pcodec | encode+decode s/latent |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        total = r["payload"] + r["side"]
        lines.append(f"| {r['bits']} | {r['coder']} | {r['payload']:,.0f} | {r['side']:,.0f} | "
                     f"{total / 1000 / megapixels:.1f} | {total / base[r['bits']]:.3f} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = crop_parser(__doc__, limit=8)
    p.add_argument("--bits", type=int, nargs="+", default=[8, 6])
    p.add_argument("--latents", help="an .npz of benchmarks/latent_rate.py and the key of its latents, NPZ:KEY")
    args = p.parse_args()
    if args.latents:
        path, key = args.latents.split(":")
        stored = np.load(path)
        latents, side = stored[key], stored["images"].shape[1]
    else:
        from lbdask.models import load_model

        model = load_model("taef2", weights=args.weights, device="cpu")
        latents = model.encode(np.stack([s.rgb for s in load_sources(args.src, args.crop, args.limit)]))
        side = args.crop
    print(f"{platform.machine()} {platform.processor() or ''}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(latents)} latents {latents.shape[1:]}")
    print(markdown(measure(latents, args.bits), side * side / 1e6))


if __name__ == "__main__":
    main()
