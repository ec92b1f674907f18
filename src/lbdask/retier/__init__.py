"""The re-tiering job: apply a plan (lbdask.tiering) to an archive on a Dask cluster
(docs/operations.md). `moves` does one move per object, `reencode` re-encodes latents with
another model, `sources` finds a source for a convert, `sweep` removes unreferenced objects,
`apply` runs the chunks of moves on a cluster."""
