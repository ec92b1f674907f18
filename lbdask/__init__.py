"""lbdask: a latent-first image archive on Dask."""
__version__ = "0.1.0"
