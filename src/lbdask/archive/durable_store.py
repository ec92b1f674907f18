"""A Zarr v3 `LocalStore` whose writes survive a power loss once they return.

zarr-python's LocalStore writes a temporary file and renames it, without fsync: after a
power loss a shard that a committed catalog row points to could be empty. This subclass
overrides the store's public write methods (the extension point zarr offers: a Store
implementation, no patch of zarr internals) and writes each object as the catalog writes
its own (`objects.replace_durably`: fsync of the file, rename, fsync of the directory), so
a shard is on the disk before `write_shard` returns and the batch commits.
"""
from __future__ import annotations

import asyncio

from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from lbdask.archive.objects import create_durably, replace_durably


class DurableLocalStore(LocalStore):
    """LocalStore with fsynced writes (file and directory)."""

    def _checked_path(self, key: str, value: Buffer) -> str:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"DurableLocalStore.set(): `value` must be a Buffer, not {type(value)}")
        return str(self.root / key)

    async def set(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        path = self._checked_path(key, value)
        await asyncio.to_thread(replace_durably, path, value.as_buffer_like())

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        path = self._checked_path(key, value)
        await asyncio.to_thread(create_durably, path, value.as_buffer_like())

    def set_sync(self, key: str, value: Buffer) -> None:
        self._ensure_open_sync()
        replace_durably(self._checked_path(key, value), value.as_buffer_like())
