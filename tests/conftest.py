"""Shared fixtures: paths to the shared corpus and weights, and a real local S3 server."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import SHARED, free_port, subprocess_env, wait_port
from tests.support.cluster import TAEF2_WEIGHTS as TAEF2
from tests.support.retier import (  # noqa: F401 - fixtures: the re-tiering tests' archive and cluster, a model Y
    jobs_cluster,
    model_y,
    retier_archive,
)
from tests.support.serve_cluster import archive, cluster, served  # noqa: F401 - fixtures: a served cluster per module

CORPUS = SHARED / "corpus" / "ai-png"


def _have_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def pytest_collection_modifyitems(config, items):
    if _have_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def taef2_dir() -> Path:
    if not (TAEF2 / "taef2_encoder.pth").is_file():
        pytest.skip(f"TAEF2 weights not found at {TAEF2}")
    return TAEF2


@pytest.fixture(scope="module")
def model(taef2_dir):
    """TAEF2 with the real weights on the CPU, loaded once per test module (a module may
    override it with a model of its own)."""
    from lbdask.models import load_model

    return load_model("taef2", weights=taef2_dir, device="cpu")


@pytest.fixture
def dask_env() -> dict[str, str]:
    """Environment for scheduler, worker and CLI subprocesses, taken when the test starts
    (after fixtures such as s3_bucket have set AWS_*)."""
    return subprocess_env()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server over HTTP on loopback (tests/support/s3_server.py); yields its endpoint URL.

    Sets the AWS environment so that s3fs (in this process and in Dask worker
    processes started by tests) talks to it with dummy credentials.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "support" / "s3_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, proc, timeout=30)
    except (RuntimeError, TimeoutError) as exc:  # pragma: no cover
        proc.kill()
        pytest.fail(f"moto server did not start: {exc}")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["folder", "s3"])
def dest(request) -> str:
    """An archive location that does not exist yet: a folder, then a prefix on the local S3
    server (tests of store-level behaviour run on both; a module may define its own `dest`)."""
    if request.param == "folder":
        return str(request.getfixturevalue("tmp_path") / "arc")
    return request.getfixturevalue("s3_bucket") + "/arc"


@pytest.fixture
def s3_bucket(s3_server, request) -> str:
    """A fresh, empty bucket on the local S3 server; yields `s3://NAME`."""
    import s3fs

    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40] + f"-{os.getpid()}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(name)
    fs.invalidate_cache()
    yield f"s3://{name}"
