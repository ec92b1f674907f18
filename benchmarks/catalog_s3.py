"""The local S3 server for the catalog benchmarks, and a store-request counter (stdlib only).

`S3Server` runs tests/support/s3_server.py (moto's server app with atomic conditional
writes, as the tests run it) on a free loopback port, sets the AWS_* variables lbdask and
s3fs read, and creates a bucket. `count_requests` wraps an s3fs filesystem's one call
into the S3 client, so every request it sends (each page of a LIST too) is counted by
operation name; `logged_requests` counts them from the server's request log instead
(for clients that are not s3fs).
"""
from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVER = Path(__file__).resolve().parents[1] / "tests" / "support" / "s3_server.py"


class S3Server:
    """`with S3Server() as bucket:` a moto server on loopback with an empty bucket."""

    def __init__(self, python: str = sys.executable, bucket: str = "bench", log: str | None = None) -> None:
        self.python, self.bucket, self.log = python, bucket, log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        err = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen([self.python, str(SERVER), str(self.port)], stdout=subprocess.DEVNULL, stderr=err)
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"})
        for _ in range(300):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT"))
                return self.bucket
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError("the local S3 server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def logged_requests(log: str) -> int:
    """Requests the server has answered so far: werkzeug logs one line per request to stderr."""
    time.sleep(0.2)  # the line is written after the response went out
    with open(log) as f:
        return sum(1 for line in f if '" 2' in line or '" 3' in line or '" 4' in line or '" 5' in line)


def count_requests(fs: Any) -> collections.Counter:
    """Count the S3 requests an s3fs filesystem sends from now on (by operation name)."""
    counts: collections.Counter = collections.Counter()
    call = fs._call_s3

    async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
        counts[method] += 1
        return await call(method, *args, **kwargs)

    fs._call_s3 = counted
    return counts
