"""An object store's latency for benchmarks and tests, as a fetch hook of the serving workers.

An archive in a local folder answers in microseconds; an object store sends the first byte
after tens of ms and then streams at some MB/s. `StoreLatency` makes every fetch of a serving
worker wait that long before it reads (`serve.deploy.install(..., fetch_hook=StoreLatency(...))`),
so benchmarks/serve_latency.py and the spillover tests see S3-like fetches. Serving installs no
hook: the production fetch (serve.archives) calls a no-op.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from lbdask.archive import CatalogRow


@dataclass(frozen=True)
class StoreLatency:
    """First byte after `first_byte_ms`, then the row's stored bytes at `mb_per_s` (0: no transfer time)."""

    first_byte_ms: float = 0.0
    mb_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.first_byte_ms < 0 or self.mb_per_s < 0:
            raise ValueError(f"first_byte_ms and mb_per_s must be >= 0, not {self.first_byte_ms}, {self.mb_per_s}")

    def seconds(self, nbytes: int) -> float:
        """How long fetching `nbytes` takes: first byte + transfer."""
        transfer = nbytes / (self.mb_per_s * 1e6) if self.mb_per_s else 0.0
        return self.first_byte_ms / 1000 + transfer

    def __call__(self, row: CatalogRow) -> None:
        time.sleep(self.seconds(row.stored_bytes or 0))
