"""Request traces: a generator calibrated to the published access statistics, and I/O.

A trace is four columns, one row per request: timestamp (s), object id, PNG bytes and
latent bytes. Traces are stored as `.npz` (fast) or CSV (`timestamp,id,png_bytes,
latent_bytes`), and libCacheSim's plain CSV traces can be read with named columns.

The generator is an object-level model (like the paper's 615x object sample of the
production trace): each object gets a birth time (catalog growing exponentially), a
lifetime view count drawn from a piecewise quantile function solved so the popularity
shares come out exactly, and view ages (time after birth) from a three-part mixture
(minutes-to-hours burst, days, heavy tail over years) that gives the post-birth decay
and the re-access interval distribution.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbdask.errors import InputError

DAY = 86400.0
MONTH_DAYS = 365.25 / 12


@dataclass
class TraceConfig:
    """Generator parameters; targets are the production-trace figures of design-notes.md."""

    days: float = 1049.0
    requests_per_image: float = 2.07e9 / 92.3e6
    end_monthly_growth: float = 3.76e6 / 92.3e6      # new images per month at the end / catalog
    once_fraction: float = 0.15                      # images viewed exactly once
    under_ten_fraction: float = 0.69                 # images viewed fewer than ten times
    top1_share: float = 0.39                         # share of views of the top 1 % of images
    top10_share: float = 0.71                        # share of views of the top 10 %
    # view ages: burst (exponential, hours), days (exponential), tail (Lomax, days)
    # (calibrated by random search on 1 M-request traces against the interval targets)
    burst_weight: float = 0.16
    burst_mean_hours: float = 2.1
    days_weight: float = 0.19
    days_mean: float = 7.3
    tail_scale_days: float = 59.0
    tail_shape: float = 0.67
    png_median_bytes: int = 1_400_000
    png_sigma: float = 0.25
    latent_ratio: float = 0.197                      # latent bytes / PNG bytes (paper Table 3)
    latent_ratio_sigma: float = 0.08

    def validate(self) -> None:
        if self.days <= 0 or self.requests_per_image <= 1:
            raise ValueError("days must be > 0 and requests_per_image > 1")
        if not 0 < self.once_fraction < self.under_ten_fraction < 0.9:
            raise ValueError("need 0 < once_fraction < under_ten_fraction < 0.9")
        if not 0 < self.top1_share < self.top10_share < 1:
            raise ValueError("need 0 < top1_share < top10_share < 1")
        if not 0 <= self.burst_weight + self.days_weight <= 1:
            raise ValueError("burst_weight + days_weight must be in [0, 1]")


@dataclass
class Trace:
    """Columns of a request trace, sorted by timestamp."""

    timestamp: np.ndarray      # int64 seconds
    id: np.ndarray             # int64 object ids
    png_bytes: np.ndarray      # int64
    latent_bytes: np.ndarray   # int64

    def __len__(self) -> int:
        return len(self.id)

    def working_set_bytes(self) -> int:
        """WSS: total PNG bytes of the distinct objects (first size seen per object)."""
        _, first = np.unique(self.id, return_index=True)
        return int(self.png_bytes[first].sum())


# ----------------------------------------------------------------------------- generation
def _bisect(f, lo: float, hi: float, iters: int = 80) -> float:
    """Root of an increasing function f on [lo, hi]."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _log_band(u: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return v0 * (v1 / v0) ** ((u - u0) / (u1 - u0))


def view_counts(n_images: int, cfg: TraceConfig, rng: np.random.Generator) -> np.ndarray:
    """Lifetime view counts whose shares match cfg (quantile bands solved per catalog size)."""
    grid = (np.arange(n_images) + 0.5) / n_images        # stratified quantiles: exact shares
    u = grid[rng.permutation(n_images)]
    total = cfg.requests_per_image * n_images
    p1, p10, p_top10, p_top1 = cfg.once_fraction, cfg.under_ten_fraction, 0.90, 0.99

    def counts(q: np.ndarray, v90: float, v99: float, a: float) -> np.ndarray:
        v = np.ones_like(q)
        b = (q >= p1) & (q < p10)
        v[b] = np.floor(_log_band(q[b], p1, p10, 2.0, 10.0))
        b = (q >= p10) & (q < p_top10)
        v[b] = np.floor(_log_band(q[b], p10, p_top10, 10.0, v90))
        b = (q >= p_top10) & (q < p_top1)
        v[b] = np.floor(_log_band(q[b], p_top10, p_top1, v90, v99))
        b = q >= p_top1
        v[b] = np.floor(v99 * ((1.0 - q[b]) / (1.0 - p_top1)) ** (-a))
        return v

    low = grid < p_top10
    rest_target = (1 - cfg.top10_share) * total
    v90 = _bisect(lambda x: counts(grid[low], x, x, 0.0).sum() - rest_target, 10.0, 1e6)
    mid = (grid >= p_top10) & (grid < p_top1)
    band_target = (cfg.top10_share - cfg.top1_share) * total
    v99 = _bisect(lambda x: counts(grid[mid], v90, x, 0.0).sum() - band_target, v90, 1e8)
    top = grid >= p_top1
    top_target = cfg.top1_share * total
    a = _bisect(lambda x: counts(grid[top], v90, v99, x).sum() - top_target, 0.0, 3.0)
    return counts(u, v90, v99, a).astype(np.int64)


def birth_times(n_images: int, cfg: TraceConfig, rng: np.random.Generator) -> np.ndarray:
    """First-appearance times (days) with arrivals growing exponentially to the end rate."""
    t = cfg.days
    per_day = cfg.end_monthly_growth / MONTH_DAYS
    k = _bisect(lambda x: x / (1 - math.exp(-x * t)) - per_day, 1e-9, 1.0)
    u = rng.random(n_images)
    return np.log1p(u * math.expm1(k * t)) / k


def view_ages(limit_days: np.ndarray, cfg: TraceConfig, rng: np.random.Generator) -> np.ndarray:
    """Ages (days after birth) of re-accesses, each truncated to its own limit."""
    n = len(limit_days)
    m1 = cfg.burst_mean_hours / 24.0
    m2 = cfg.days_mean
    s, k = cfg.tail_scale_days, cfg.tail_shape
    lim = np.maximum(limit_days, 1e-9)
    cdf1 = -np.expm1(-lim / m1)
    cdf2 = -np.expm1(-lim / m2)
    cdf3 = 1.0 - (1.0 + lim / s) ** (-k)
    w1 = cfg.burst_weight * cdf1
    w2 = cfg.days_weight * cdf2
    w3 = (1.0 - cfg.burst_weight - cfg.days_weight) * cdf3
    pick = rng.random(n) * (w1 + w2 + w3)
    v = rng.random(n)
    ages = np.empty(n)
    c1 = pick < w1
    c2 = ~c1 & (pick < w1 + w2)
    c3 = ~(c1 | c2)
    ages[c1] = -m1 * np.log1p(-v[c1] * cdf1[c1])
    ages[c2] = -m2 * np.log1p(-v[c2] * cdf2[c2])
    ages[c3] = s * ((1.0 - v[c3] * cdf3[c3]) ** (-1.0 / k) - 1.0)
    return np.minimum(ages, limit_days)


def generate_trace(requests: int, cfg: TraceConfig | None = None, seed: int = 0) -> Trace:
    """Synthesise a trace of about `requests` requests (exactly sum of view counts)."""
    cfg = cfg or TraceConfig()
    try:
        cfg.validate()
    except ValueError as exc:
        raise InputError(f"trace config: {exc}") from None
    if requests < 1000:
        raise InputError(f"trace: need at least 1000 requests, got {requests}")
    rng = np.random.default_rng(seed)
    n_images = max(100, int(round(requests / cfg.requests_per_image)))
    views = view_counts(n_images, cfg, rng)
    birth = np.sort(birth_times(n_images, cfg, rng))
    obj = np.repeat(np.arange(n_images, dtype=np.int64), views)
    first = np.zeros(len(obj), dtype=bool)
    first[np.concatenate(([0], np.cumsum(views)[:-1]))] = True
    t = birth[obj].copy()
    again = ~first
    t[again] += view_ages(cfg.days - t[again], cfg, rng)
    order = np.argsort(t, kind="stable")
    png = np.exp(rng.normal(math.log(cfg.png_median_bytes), cfg.png_sigma, n_images)).astype(np.int64)
    lat = (png * cfg.latent_ratio * np.exp(rng.normal(0.0, cfg.latent_ratio_sigma, n_images))).astype(np.int64)
    obj = obj[order]
    return Trace(timestamp=(t[order] * DAY).astype(np.int64), id=obj + 1,
                 png_bytes=png[obj], latent_bytes=np.maximum(lat[obj], 1))


# ----------------------------------------------------------------------------- statistics
def trace_statistics(trace: Trace) -> dict[str, float]:
    """The design-notes statistics measured on a trace (shares, view counts, intervals, decay)."""
    ids, inverse, views = np.unique(trace.id, return_inverse=True, return_counts=True)
    n = len(ids)
    ranked = np.sort(views)[::-1]
    total = ranked.sum()
    order = np.lexsort((trace.timestamp, inverse))
    obj = inverse[order]
    ts = trace.timestamp[order]
    same = obj[1:] == obj[:-1]
    gaps = (ts[1:] - ts[:-1])[same]
    first_ts = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, inverse, trace.timestamp)
    stats = {
        "requests": float(len(trace)),
        "images": float(n),
        "requests_per_image": float(total / n),
        "top1_share": float(ranked[: max(1, n // 100)].sum() / total),
        "top10_share": float(ranked[: max(1, n // 10)].sum() / total),
        "once_fraction": float(np.mean(views == 1)),
        "under_ten_fraction": float(np.mean(views < 10)),
        "reaccess_within_hour": float(np.mean(gaps <= 3600)),
        "reaccess_within_day": float(np.mean(gaps <= DAY)),
        "reaccess_after_30_days": float(np.mean(gaps > 30 * DAY)),
        "zipf_slope_top1": _rank_slope(ranked, n),
    }
    stats.update(_decay_by_quartile(trace, inverse, views, first_ts))
    return stats


def _rank_slope(ranked: np.ndarray, n: int) -> float:
    """Least-squares slope of log(views) against log(rank) over the top 1 % of images."""
    top = max(10, n // 100)
    r = np.log(np.arange(1, top + 1))
    return float(-np.polyfit(r, np.log(ranked[:top]), 1)[0])


def _decay_by_quartile(trace: Trace, inverse: np.ndarray, views: np.ndarray,
                       first_ts: np.ndarray) -> dict[str, float]:
    """Access rate in the first week over the rate in the week before age one year, per quartile."""
    end = trace.timestamp.max()
    old = first_ts <= end - 365 * DAY
    age_days = (trace.timestamp - first_ts[inverse]) / DAY
    rank = np.argsort(np.argsort(views, kind="stable"), kind="stable") / len(views)
    quartile = np.minimum((rank * 4).astype(int), 3)
    out = {}
    for q in range(4):
        members = old & (quartile == q)
        req = members[inverse]
        early = np.count_nonzero(req & (age_days < 7))
        late = np.count_nonzero(req & (age_days >= 358) & (age_days < 365))
        out[f"decay_q{q + 1}"] = float(early / late) if late else math.inf
    return out


# ----------------------------------------------------------------------------- storage
CSV_HEADER = ["timestamp", "id", "png_bytes", "latent_bytes"]


def save_trace(trace: Trace, path: str | Path) -> None:
    """Write `.npz` (columnar, fast) or `.csv` (header timestamp,id,png_bytes,latent_bytes)."""
    path = Path(path)
    cols = {name: getattr(trace, name) for name in CSV_HEADER}
    if path.suffix == ".npz":
        np.savez(path, **cols)
    elif path.suffix == ".csv":
        data = np.column_stack([cols[name] for name in CSV_HEADER])
        np.savetxt(path, data, fmt="%d", delimiter=",", header=",".join(CSV_HEADER), comments="")
    else:
        raise InputError(f"trace: unknown format {path.suffix!r} for {path}; use .npz or .csv")


def load_trace(path: str | Path, lcs_columns: dict[str, int] | None = None,
               latent_ratio: float = 0.197) -> Trace:
    """Read a trace written by `save_trace`, or a libCacheSim CSV when `lcs_columns` is given."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trace: no such file {path}")
    if lcs_columns is not None:
        return read_libcachesim_csv(path, latent_ratio=latent_ratio, **lcs_columns)
    if path.suffix == ".npz":
        try:
            with np.load(path) as z:
                cols = [np.asarray(z[name], dtype=np.int64) for name in CSV_HEADER]
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(f"trace: {path} is not a trace .npz ({exc})") from None
        return Trace(*cols)
    if path.suffix == ".csv":
        with path.open() as fh:
            header = fh.readline().strip().split(",")
        if header != CSV_HEADER:
            raise InputError(f"trace: {path} header is {header}, expected {CSV_HEADER} "
                             "(for a libCacheSim CSV pass its columns)")
        try:
            data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        except ValueError as exc:
            raise InputError(f"trace: {path}: {exc}") from None
        return Trace(*(np.ascontiguousarray(data[:, i]) for i in range(4)))
    raise InputError(f"trace: unknown format {path.suffix!r} for {path}; use .npz or .csv")


def read_libcachesim_csv(path: str | Path, time_col: int = 1, id_col: int = 2, size_col: int = 3,
                         delimiter: str = ",", has_header: bool | None = None,
                         latent_ratio: float = 0.197) -> Trace:
    """Read a libCacheSim plain CSV trace (1-based columns as in its `-t time-col=..` option).

    Non-numeric object ids are mapped to integers; the object size is taken as the PNG
    size and the latent size as `latent_ratio` of it. A header is detected when the
    first row's time column is not a number.
    """
    times, ids, sizes = [], [], []
    with Path(path).open(newline="") as fh:
        rows = csv.reader(fh, delimiter=delimiter)
        for lineno, row in enumerate(rows):
            if not row:
                continue
            try:
                t, i, s = row[time_col - 1], row[id_col - 1], row[size_col - 1]
            except IndexError:
                raise InputError(f"trace: {path}:{lineno + 1}: fewer columns than asked for") from None
            if lineno == 0 and (has_header or (has_header is None and not _is_number(t))):
                continue
            times.append(float(t))
            ids.append(i)
            sizes.append(int(float(s)))
    if not ids:
        raise InputError(f"trace: {path} holds no requests")
    try:
        id_arr = np.array(ids, dtype=np.int64)
    except ValueError:
        id_arr = np.unique(np.array(ids), return_inverse=True)[1].astype(np.int64)
    png = np.array(sizes, dtype=np.int64)
    return Trace(timestamp=np.array(times).astype(np.int64), id=id_arr, png_bytes=png,
                 latent_bytes=np.maximum((png * latent_ratio).astype(np.int64), 1))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
