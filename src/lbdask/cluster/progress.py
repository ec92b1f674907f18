"""Terminal progress of a job (tqdm): images, MB, images/s and ETA, per finished piece of work
(a migration's committed batch, a re-tiering chunk)."""
from __future__ import annotations

import sys
from typing import Protocol

from tqdm import tqdm


class Done(Protocol):
    """What the bar needs to know of a finished piece of work."""

    images: int
    source_bytes: int


class JobProgress:
    """A tqdm bar over images with MB done and MB/s in its postfix; silent when disabled."""

    def __init__(self, images: int, source_bytes: int, enabled: bool = True, desc: str = "migrate") -> None:
        self.source_mb = source_bytes / 1e6
        self.done_mb = 0.0
        self.bar = tqdm(total=images, unit="img", desc=desc, disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)

    def update(self, result: Done) -> None:
        """Advance by one finished piece of work."""
        self.done_mb += result.source_bytes / 1e6
        elapsed = self.bar.format_dict.get("elapsed") or 0.0
        rate = self.done_mb / elapsed if elapsed else 0.0
        self.bar.set_postfix_str(f"{self.done_mb:.1f}/{self.source_mb:.1f} MB, {rate:.2f} MB/s", refresh=False)
        self.bar.update(result.images)

    def close(self) -> None:
        self.bar.close()
