"""Typed contents of `configs/serve.yaml`: per-worker cache, tuner, worker, client and HTTP settings.

The `worker:` section was called `runtime:`, and its `runtime` key `backend`, until this release;
an older file still loads, with a DeprecationWarning and one log line naming the new key and
the file (`RENAMED_KEYS`, read by lbdask.config.build).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from lbdask.access.days import DEFAULT_RETENTION_DAYS
from lbdask.cache import CacheConfig
from lbdask.cache.tuner import TunerConfig
from lbdask.config import build, config_path, deprecated, read_yaml

#: Keys of the `worker:` section no longer read: benchmarks pass lbdask.serve.store_latency.StoreLatency.
DROPPED_KEYS = ("fetch_delay_ms", "fetch_mb_per_s")

#: How a decode leaves an overloaded owner: least-loaded peer chosen by the owner
#: (`explicit`, lbdask.routing.ring.choose_decoder), a Dask task the scheduler may steal (`steal`), or never.
SpilloverMode = Literal["explicit", "steal", "off"]


@dataclass
class WorkerConfig:
    """What each serving worker holds and does: cache budget, pools, decode batching, spillover,
    fetch retries, the decode's precision and inference runtime, access statistics, catalog watch."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = {"backend": "runtime"}

    cache_bytes: int = 256 * 2**20   # C per worker, shared by every archive the worker serves
    io_threads: int = 8              # archive fetches (local folder or S3): latency-bound
    cpu_threads: int = 2             # latent decompression and PNG encoding
    max_batch: int = 0               # decodes of one latent shape run as one model call (0: auto)
    theta: float = 2.0               # decode queue depth above which a decode spills over
    spillover: SpilloverMode = "explicit"
    depth_max_age_ms: float = 100.0  # peers' queue depths are re-polled when older than this
    fetch_retries: int = 2           # extra attempts after a failed archive fetch
    retry_backoff_ms: float = 200.0  # wait before retry k: k * backoff
    precision: str | None = None     # fp32|bf16|fp16|auto of the decode (--precision); None: configs/models.yaml
    runtime: str | None = None       # torch|openvino|auto (--runtime); None: configs/models.yaml
    access_flush_s: float = 60.0     # access statistics are written to the archive this often
    access_compact_every: int = 10   # fold the archive's access logs every N flushes (0: never)
    access_retention_days: int = DEFAULT_RETENTION_DAYS  # days of per-day read counts a fold keeps
    catalog_refresh_s: float = 10.0  # cached ids whose catalog row changed are dropped this often (serve.freshness)

    def validate(self) -> None:
        if self.cache_bytes < 0:
            raise ValueError("cache_bytes must be >= 0")
        if self.io_threads < 1 or self.cpu_threads < 1 or self.max_batch < 0:
            raise ValueError("io_threads and cpu_threads must be >= 1, max_batch >= 0 (0: auto)")
        if self.theta < 0 or self.depth_max_age_ms < 0:
            raise ValueError("theta and depth_max_age_ms must be >= 0")
        if min(self.fetch_retries, self.retry_backoff_ms) < 0:
            raise ValueError("fetch_retries and retry_backoff_ms must be >= 0")
        # the choices of lbdask.cli.inference_options (lbdask.models.precision imports torch)
        if self.precision not in (None, "auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.access_flush_s <= 0 or self.access_compact_every < 0:
            raise ValueError("access_flush_s must be > 0, access_compact_every >= 0 (0: never)")
        if self.access_retention_days < 1:
            raise ValueError(f"access_retention_days must be at least 1, not {self.access_retention_days}")
        if self.catalog_refresh_s <= 0:
            raise ValueError("catalog_refresh_s must be > 0 (cached ids follow catalog changes this late at most)")
        if self.runtime not in (None, "auto", "torch", "openvino"):
            raise ValueError(f"runtime must be auto, torch or openvino, not {self.runtime!r}")


@dataclass
class ClientConfig:
    """The reading client: retries on the next owner after a worker died, RPC timeout, ring refresh."""

    retries: int = 1
    timeout_s: float = 120.0
    ring_refresh_s: float = 2.0      # how often the worker list is re-read (in the background)

    def validate(self) -> None:
        if self.retries < 0 or self.timeout_s <= 0 or self.ring_refresh_s <= 0:
            raise ValueError("retries must be >= 0, timeout_s and ring_refresh_s > 0")


@dataclass
class HttpConfig:
    """The HTTP gateway (serve.http): how long browsers and CDNs may reuse an image, and how
    long a client should wait before retrying when the archive cannot be reached."""

    max_age_s: int = 86400           # Cache-Control max-age of image responses (0: revalidate every time)
    retry_after_s: int = 5           # Retry-After of the 503 answered while the archive is unreachable

    def validate(self) -> None:
        if self.max_age_s < 0 or self.retry_after_s < 1:
            raise ValueError("max_age_s must be >= 0 and retry_after_s >= 1")


@dataclass
class ServeSettings:
    """Everything in `configs/serve.yaml`."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = {"runtime": "worker"}

    cache: CacheConfig = field(default_factory=CacheConfig)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    http: HttpConfig = field(default_factory=HttpConfig)


def load_serve_settings(name: str = "serve") -> ServeSettings:
    """Load and validate `configs/serve.yaml` (or an explicit YAML path), deprecated keys upgraded."""
    where = str(config_path(name))
    return build(ServeSettings, upgrade(read_yaml(name), where), where=where)


def upgrade(data: Any, where: str) -> Any:
    """`data` with the keys no longer read removed, each with a warning (renamed keys: `build`)."""
    if not isinstance(data, dict):
        return data  # `build` names the error
    name = "worker" if "worker" in data else "runtime"  # `runtime:`: the section's old name
    section = data.get(name)
    if isinstance(section, dict):
        for key in (k for k in DROPPED_KEYS if k in section):
            deprecated(f"{where}: `worker.{key}` is no longer read (benchmarks pass "
                       "lbdask.serve.store_latency.StoreLatency); remove it", stacklevel=4)
        data = {**data, name: {k: v for k, v in section.items() if k not in DROPPED_KEYS}}
    return data

