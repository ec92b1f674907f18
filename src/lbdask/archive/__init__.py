"""The lbdask archive: sharded latent buckets in a Zarr v3 group, stored copies (`originals/`), catalog."""
from lbdask.archive.rows import STATUSES, CatalogRow, OriginalRef
from lbdask.archive.store import FORMAT_VERSION, Archive, ArchiveConfig

__all__ = ["Archive", "ArchiveConfig", "CatalogRow", "OriginalRef", "FORMAT_VERSION", "STATUSES"]
