"""Terminal progress of a migration (tqdm): images, MB, images/s and ETA, per committed batch.
Re-tiering (`lbdask retier --apply`) shows its chunks on the same bar."""
from __future__ import annotations

import sys

from tqdm import tqdm

from lbdask.migrate.tasks import BatchResult


class MigrationProgress:
    """A tqdm bar over images with MB done and MB/s in its postfix; silent when disabled."""

    def __init__(self, images: int, source_bytes: int, enabled: bool = True, desc: str = "migrate") -> None:
        self.source_mb = source_bytes / 1e6
        self.done_mb = 0.0
        self.bar = tqdm(total=images, unit="img", desc=desc, disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)

    def update(self, result: BatchResult) -> None:
        """Advance by one committed batch."""
        self.done_mb += result.source_bytes / 1e6
        elapsed = self.bar.format_dict.get("elapsed") or 0.0
        rate = self.done_mb / elapsed if elapsed else 0.0
        self.bar.set_postfix_str(f"{self.done_mb:.1f}/{self.source_mb:.1f} MB, {rate:.2f} MB/s", refresh=False)
        self.bar.update(result.images)

    def close(self) -> None:
        self.bar.close()
