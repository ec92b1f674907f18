"""`DurableLocalStore` through zarr's own store test suite (`zarr.testing.store.StoreTests`):
it overrides LocalStore's write methods, so it must still be a complete, correct Zarr store."""
from __future__ import annotations

from pathlib import Path

import pytest
from zarr.core.buffer import Buffer, cpu
from zarr.testing.store import StoreTests

from lbdask.archive.durable_store import DurableLocalStore


@pytest.fixture
def anyio_backend() -> str:
    """zarr's stores are asyncio code (`zarr.core.sync`): no trio run."""
    return "asyncio"


# anyio runs the async tests and the suite's async fixtures (`store`), for the sync tests too.
@pytest.mark.anyio
@pytest.mark.usefixtures("anyio_backend")
class TestDurableLocalStore(StoreTests[DurableLocalStore, cpu.Buffer]):
    store_cls = DurableLocalStore
    buffer_cls = cpu.Buffer

    async def get(self, store: DurableLocalStore, key: str) -> Buffer:
        return self.buffer_cls.from_bytes((store.root / key).read_bytes())

    async def set(self, store: DurableLocalStore, key: str, value: Buffer) -> None:
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, str]:
        return {"root": str(tmp_path)}

    def test_store_repr(self, store: DurableLocalStore) -> None:
        assert str(store) == f"file://{store.root.as_posix()}"

    def test_store_supports_writes(self, store: DurableLocalStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: DurableLocalStore) -> None:
        assert store.supports_listing
