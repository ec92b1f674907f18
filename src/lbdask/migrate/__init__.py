"""Bulk migration of a PNG archive into latents on a Dask cluster (`lbdask migrate`)."""
