"""lbdask: a latent-first image archive on Dask."""
__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # PEP 562 lazy attribute
    # `lbdask.open` imports zarr and the archive only when first used, keeping `import lbdask` light.
    if name == "open":
        from lbdask.api import open

        return open
    raise AttributeError(f"module 'lbdask' has no attribute {name!r}")
