"""Scheduled re-tiering: plan moves of archived objects between representations, then apply
them as a Dask job (docs/operations.md). `policy` reads configs/retier.yaml, `plan` decides,
`moves` does one move per object, `apply` runs them on a cluster."""
