"""The local S3 server for the catalog benchmarks, and a request count from its log (stdlib only).

`S3Server` runs tests/support/s3_server.py (moto's server app with atomic conditional
writes, as the tests run it) on a free loopback port, sets the AWS_* variables lbdask and
s3fs read, and creates a bucket. `logged_requests` counts the requests from the server's
request log (for clients that are not s3fs; lbdask's own are counted by
tests/support/store_requests.py, as `catalog_scale.py` does).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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
