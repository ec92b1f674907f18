"""Only a store's own failures become StoreError (and are retried): a bug inside a store call
(TypeError, ValueError) propagates as itself, tried once, with its traceback."""
from __future__ import annotations

import aiohttp
import botocore.exceptions
import pytest
from fsspec.exceptions import FSTimeoutError

from lbdask.archive import Archive, store
from lbdask.archive.objects import store_errors
from lbdask.errors import StoreError
from tests.support.archive import new_archive


def opening_raises(monkeypatch, exc: Exception) -> list[int]:
    """Make every read of the archive's root attributes raise `exc`; returns the call count."""
    calls = []

    def failing(loc):
        calls.append(1)
        raise exc

    monkeypatch.setattr(store, "root_attributes", failing)
    return calls


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), ValueError("bad literal"), KeyError("k")])
def test_a_bug_inside_a_store_call_propagates_as_itself_and_is_not_retried(tmp_path, monkeypatch, bug):
    dest = str(tmp_path / "arc")
    new_archive(dest)
    calls = opening_raises(monkeypatch, bug)
    with pytest.raises(type(bug)) as info:
        Archive.open(dest)
    assert info.value is bug and len(calls) == 1


def test_an_os_error_is_a_store_error_tried_three_times(tmp_path, monkeypatch):
    dest = str(tmp_path / "arc")
    new_archive(dest)
    calls = opening_raises(monkeypatch, PermissionError(13, "Permission denied"))
    with pytest.raises(StoreError, match="unreachable after 3 attempts: cannot use archive store .*PermissionError"):
        Archive.open(dest)
    assert len(calls) == 3


@pytest.mark.parametrize("failure", [
    OSError(5, "Input/output error"),
    ConnectionRefusedError(111, "Connection refused"),
    FSTimeoutError(),
    botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    botocore.exceptions.NoCredentialsError(),
    botocore.exceptions.ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"}}, "GetObject"),
    aiohttp.ServerDisconnectedError(),
])
def test_what_a_store_raises_when_it_cannot_be_used_is_one_line_store_error(failure):
    said = f"cannot use archive store s3://b/arc: {type(failure).__name__}"
    with pytest.raises(StoreError, match=said) as info, store_errors("s3://b/arc"):
        raise failure
    assert "\n" not in str(info.value) and info.value.__suppress_context__


def test_file_not_found_passes_unchanged_for_callers_that_handle_it():
    missing = FileNotFoundError(2, "No such file", "catalog/x")
    with pytest.raises(FileNotFoundError) as info, store_errors("s3://b/arc"):
        raise missing
    assert info.value is missing
