"""The Dask task of a re-tiering run: one chunk of one kind of move (`retier-<kind>-<token>`).

A chunk is one catalog batch: a task retried after a worker died finds its batch committed
and does nothing again; rows that an earlier, interrupted run already moved are skipped.
"""
from __future__ import annotations

from typing import Any

from lbdask.representation.shard import open_archive
from lbdask.retier.moves import Chunk, ChunkResult, MoveContext, convert, demote, promote, still_applies, unpromote
from lbdask.retier.reencode import reencode
from lbdask.retier.sources import purge, quarantine

CATALOG_MOVES = {"demote": demote, "convert": convert, "promote": promote, "unpromote": unpromote,
                 "reencode": reencode}


def run_chunk(dest: str, storage_options: dict[str, Any], chunk: Chunk, ctx: MoveContext) -> ChunkResult:
    """Apply one chunk; returns what it moved and what it skipped (and why)."""
    arc = open_archive(dest, storage_options)
    res = ChunkResult(chunk.kind, chunk.batch_id, len(chunk.ids))
    if chunk.kind == "quarantine":
        quarantine(arc, chunk, ctx, res, storage_options or None)
        return res
    if chunk.kind == "purge":
        purge(chunk, ctx, res, storage_options or None)
        return res
    if arc.is_committed(chunk.batch_id):
        res.already_committed = True
        return res
    rows = []
    for image_id in chunk.ids:
        row = arc.get_row(image_id)
        if still_applies(chunk.kind, row, ctx):
            rows.append(row)
        else:
            res.skip("moved already")
    new = CATALOG_MOVES[chunk.kind](arc, rows, chunk, ctx, res) if rows else []
    if new:
        arc.commit(chunk.batch_id, new)
    return res
