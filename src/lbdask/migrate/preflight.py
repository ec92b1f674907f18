"""What is checked about DEST before any cluster starts, and what a rerun finds changed.

An existing archive's layout wins over the job's settings: its recorded shard size bounds
the batch size (a batch owns whole shards), so a mismatch is refused before any image is
encoded, not after. A DEST that is neither an archive nor empty is refused too.
"""
from __future__ import annotations

from lbdask.archive import CatalogRow
from lbdask.archive.creation import archive_meta, refuse_foreign
from lbdask.archive.objects import store_errors
from lbdask.representation.listing import ListedSource
from lbdask.representation.settings import JobSettings, check_batch_fits_shard
from lbdask.storage import open_location


def check_destination(dest: str, storage_options: dict, settings: JobSettings) -> None:
    """ConfigError/InputError when the job cannot write into DEST as asked."""
    loc = open_location(dest, storage_options or None)
    with store_errors(dest):
        meta = archive_meta(loc)
        if meta is None:
            refuse_foreign(loc)
            return
    check_batch_fits_shard(settings.batch_size, int(meta.get("shard_size", 0)), f"archive {dest}")


def source_changed(listed: ListedSource, row: CatalogRow) -> bool:
    """Whether the listed source of a committed row differs from the one migrated: another
    size, or another version stamp (modification time on a folder, ETag on S3) when the row
    recorded one (rows written before stamps existed are compared by size only). False for
    a refused entry (not a file the job reads)."""
    if listed.refused is not None:
        return False
    stamp = listed.stamp
    return row.source_size != listed.size or (row.source_stamp is not None and stamp is not None
                                              and row.source_stamp != stamp)
