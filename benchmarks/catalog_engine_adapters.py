"""One small adapter per catalog engine for catalog_engines.py: write, compact, open, get.

Each is given catalog rows (`catalog_rows.row_dict`, text chunks inline). The libraries store
(id, value) pairs, the value being the row as catalog v2 indexes it (`moved_out`: the chunks
replaced by a reference, one JSON line; each engine compresses it its own way: SlateDB zlib
blocks, Lance and Delta their default column encodings): SlateDB as keys and values of its
LSM tree, Lance and Delta Lake as a table of two columns (`id` string, `row` binary), looked
up with a filter on `id` (Lance through a BTREE scalar index, Delta through file statistics
of files sorted by id: z-order on `id`). lbdask's own catalog (v2, from this tree) commits
the rows through `Archive.commit`, which moves the chunks into `meta/` itself.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from catalog_rows import moved_out, row_bytes

Pairs = list[tuple[str, bytes]]
Rows = list[dict[str, Any]]


class Engine:
    """What every adapter shares: `options` are the storage options of an s3:// path."""

    dist = ""
    needs: tuple[str, ...] = ()
    side: tuple[str, ...] = ()  # top-level folders not counted as the catalog's bytes

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.options = options or None

    def write(self, path: str, rows: Rows) -> None:
        """Commit `rows` at once (the libraries: as v2 index values)."""
        self.put(path, [(r["id"], row_bytes(moved_out(r))) for r in rows])

    def put(self, path: str, pairs: Pairs) -> None:
        raise NotImplementedError

    def finish_load(self, path: str) -> None:
        pass

    def close(self, handle: Any) -> None:
        pass

    def done(self, path: str) -> None:
        pass


class Delta(Engine):
    dist = "deltalake"
    needs = ("pyarrow",)  # an optional dependency of deltalake 1.x that the lookups use

    def put(self, path: str, pairs: Pairs) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        write_deltalake(path, pa.table({"id": [k for k, _ in pairs], "row": [v for _, v in pairs]}), mode="append",
                        storage_options=self.options)

    def compact(self, path: str, timeout: float) -> None:
        from deltalake import DeltaTable

        dt = DeltaTable(path, storage_options=self.options)
        dt.optimize.z_order(["id"])
        dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        dt.create_checkpoint()
        dt.cleanup_metadata()

    def open(self, path: str) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(path, storage_options=self.options).to_pyarrow_dataset()

    def get(self, handle: Any, key: str) -> bytes | None:
        import pyarrow.compute as pc

        t = handle.to_table(filter=pc.field("id") == key, columns=["row"])
        return t.column("row")[0].as_py() if t.num_rows else None


class Lance(Engine):
    dist = "pylance"

    def put(self, path: str, pairs: Pairs) -> None:
        import lance
        import pyarrow as pa

        table = pa.table({"id": [k for k, _ in pairs], "row": [v for _, v in pairs]})
        try:
            lance.dataset(path, storage_options=self.options)
            mode = "append"
        except (ValueError, OSError):
            mode = "create"
        lance.write_dataset(table, path, mode=mode, storage_options=self.options)

    def compact(self, path: str, timeout: float) -> None:
        import lance

        ds = lance.dataset(path, storage_options=self.options)
        ds.optimize.compact_files()
        ds = lance.dataset(path, storage_options=self.options)
        ds.create_scalar_index("id", "BTREE", replace=True)
        ds.cleanup_old_versions(older_than=__import__("datetime").timedelta(seconds=0), delete_unverified=True)

    def open(self, path: str) -> Any:
        import lance

        return lance.dataset(path, storage_options=self.options)

    def get(self, handle: Any, key: str) -> bytes | None:
        t = handle.to_table(filter=f"id = '{key}'", columns=["row"])
        return t.column("row")[0].as_py() if t.num_rows else None


class Slate(Engine):
    dist = "slatedb"

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)  # on S3 the store reads AWS_ENDPOINT_URL and AWS_ALLOW_HTTP from the environment
        self.loop = asyncio.new_event_loop()
        self.db: Any = None
        self.store: Any = None
        self.name = ""

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _writer(self, path: str) -> Any:
        from slatedb.uniffi import DbBuilder, ObjectStore, Settings

        if self.db is None:
            if path.startswith("s3://"):
                bucket, _, self.name = path[len("s3://"):].partition("/")
                self.store = ObjectStore.resolve(f"s3://{bucket}")
            else:
                os.makedirs(path, exist_ok=True)
                self.store = ObjectStore.resolve("file:///")
                self.name = path.lstrip("/")  # the database's path inside the store
            settings = Settings.default()
            settings.set("compactor_options.poll_interval", '"100ms"')
            settings.set("compression_codec", '"Zlib"')
            settings.set("compactor_options.worker.compression_codec", '"Zlib"')
            builder = DbBuilder(self.name, self.store)
            builder.with_settings(settings)
            self.db = self._run(builder.build())
        return self.db

    def put(self, path: str, pairs: Pairs) -> None:
        from slatedb.uniffi import FlushOptions, FlushType, WriteBatch

        batch = WriteBatch()
        for k, v in pairs:
            batch.put(k.encode(), v)
        db = self._writer(path)
        self._run(db.write(batch))
        # a new reader saw the batch only once the WAL was flushed (0.17): flush, as a commit
        self._run(db.flush_with_options(FlushOptions(flush_type=FlushType.WAL)))

    def finish_load(self, path: str) -> None:
        from slatedb.uniffi import FlushOptions, FlushType

        self._run(self._writer(path).flush_with_options(FlushOptions(flush_type=FlushType.MEM_TABLE)))

    def compact(self, path: str, timeout: float) -> None:
        """Submit one tiered compaction of every L0 table and sorted run into a new sorted run
        (the scheduler leaves a few L0 tables alone), and wait until the writer's compactor
        committed it."""
        from slatedb.uniffi import AdminBuilder, CompactionSpec, SourceId

        admin = AdminBuilder(self.name, self.store).build()
        manifest = self._run(admin.read_compactor_state_view()).manifest
        sources = [SourceId.SST_VIEW(v.id) for v in manifest.l0] + [SourceId.SORTED_RUN(r.id) for r in manifest.compacted]
        destination = max([r.id for r in manifest.compacted], default=-1) + 1
        self._run(admin.submit_compaction(CompactionSpec.TIERED(b"", sources, destination)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._run(admin.read_compactor_state_view()).manifest.l0:
                return
            time.sleep(0.05)
        raise TimeoutError("SlateDB's compactor left L0 tables")

    def open(self, path: str) -> Any:
        from slatedb.uniffi import DbReaderBuilder

        return self._run(DbReaderBuilder(self.name, self.store).build())

    def get(self, handle: Any, key: str) -> bytes | None:
        return self._run(handle.get(key.encode()))

    def close(self, handle: Any) -> None:
        self._run(handle.shutdown())

    def done(self, path: str) -> None:
        if self.db is not None:
            self._run(self.db.shutdown())
            self.db = None


class Lbdask(Engine):
    """Catalog v2 of this tree: one `Archive.commit` per write (its commit-log slot, the chunks
    into `meta/<batch>.bin`), `Archive.compact` every `compact_every_batches` commits as the
    migration driver folds during a job; a handle is a `Catalog` (its own caches)."""

    side = ("meta",)  # the PNG metadata objects: the engines are given no chunks at all

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)  # on S3, s3fs reads AWS_ENDPOINT_URL from the environment (not `options`)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from lbdask.representation.settings import JobSettings

        self.every = JobSettings.compact_every_batches
        self.arc: Any = None
        self.commits = 0

    def write(self, path: str, rows: Rows) -> None:
        from lbdask.archive import Archive, CatalogRow

        if self.arc is None:
            self.arc = Archive.create(path, {"name": "bench", "fingerprint": "b" * 64, "latent_channels": 4,
                                             "downsample": 8, "config": {}})
        batch = rows[0]["batch_id"]
        self.arc.commit(batch, [CatalogRow.from_json(r) for r in rows])
        self.commits += 1
        if self.every and self.commits % self.every == 0:
            self.arc.compact()

    def compact(self, path: str, timeout: float) -> None:
        self.arc.compact()

    def open(self, path: str) -> Any:
        from lbdask.archive.catalog import Catalog
        from lbdask.storage import open_location

        return Catalog(open_location(path))

    def get(self, handle: Any, key: str) -> Any:
        return handle.get_row(key)

    def done(self, path: str) -> None:
        self.arc, self.commits = None, 0


ENGINES = {"lbdask": Lbdask, "slatedb": Slate, "lance": Lance, "delta": Delta}
