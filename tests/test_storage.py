import pytest

from lbdask.errors import ConfigError, StoreError
from lbdask.storage import open_location, parse_storage_options


def test_local_location_joins_paths(tmp_path):
    loc = open_location(str(tmp_path))
    assert not loc.is_remote
    assert loc.path("a", "/b/") == f"{tmp_path}/a/b"


def test_s3_location_reaches_local_server(s3_bucket):
    loc = open_location(s3_bucket + "/prefix")
    assert loc.is_remote
    loc.fs.pipe(loc.path("x.bin"), b"hello")
    assert loc.fs.cat(loc.path("x.bin")) == b"hello"


def test_bad_locations_and_options_raise_clear_errors():
    with pytest.raises(StoreError, match="unsupported location"):
        open_location("gs://bucket/x")
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_storage_options("{nope")
    with pytest.raises(ConfigError, match="JSON object"):
        parse_storage_options("[1]")


def test_an_endpoint_in_the_options_wins_over_the_environment(monkeypatch):
    from lbdask.storage import s3_options

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://from-env:1")
    given = {"key": "k", "client_kwargs": {"endpoint_url": "http://given:2", "region_name": "x"}}
    assert s3_options(given)["client_kwargs"] == {"endpoint_url": "http://given:2", "region_name": "x"}
    assert s3_options({"endpoint_url": "http://top:3"})["client_kwargs"] == {"endpoint_url": "http://top:3"}
    assert s3_options({})["client_kwargs"] == {"endpoint_url": "http://from-env:1"}
    assert given["client_kwargs"]["endpoint_url"] == "http://given:2"  # the caller's dict is not changed
