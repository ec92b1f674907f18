"""The lbdask archive: sharded latent buckets in a Zarr v3 group, kept originals, catalog."""
from .rows import STATUSES, CatalogRow, OriginalRef
from .store import FORMAT_VERSION, Archive, ArchiveConfig

__all__ = ["Archive", "ArchiveConfig", "CatalogRow", "OriginalRef", "FORMAT_VERSION", "STATUSES"]
