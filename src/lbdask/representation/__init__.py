"""Turning an image's pixels into its stored representation - latent, kept PNG or lossless JPEG XL
copy, lossy JPEG XL, or the raw bytes of a failed input - the core both jobs build on.

`sources` (the PNG source: listing, `SourceItem`, fetching), `settings` (`JobSettings`,
configs/jobs.yaml: what a job does with each image), `batch` (the batch types passed between
the steps), `fate` (the one place an image's fate is decided), `encode` (the resident model's
encode and measured round trip) and `shard` (writing a decided batch: shards, copies, commit).
The migration job (`lbdask.migrate`) orchestrates these over a source; re-tiering
(`lbdask.retier`) runs its demote and re-encode moves through them.

Named for what it produces: "representation" is what the catalog, the report
(`by_representation`) and the chooser already call latent / png / jxl / jxl-lossy. Not
"convert": that is a re-tiering move (kept PNG -> lossless JPEG XL).
"""
