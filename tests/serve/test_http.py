"""The HTTP gateway and `--prewarm` on real processes: `lbdask serve --workers 1 --http ... --prewarm FILE`
plus a second `lbdask gateway` process in front of the same cluster, read with http.client.

One served cluster for the module; the test that renames the archive runs after the others
that read, the one that stops the cluster after it. The 503 test needs the serving workers to report
an unreachable archive as StoreError.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from types import SimpleNamespace

import pytest
from distributed import Client

import lbdask
from tests.support.cluster import subprocess_env
from tests.support.serve import build_serving_archive, corrupt_latent

pytestmark = pytest.mark.slow

PREWARMED = ["g/000.png", "g/001.png"]


def _line(proc: subprocess.Popen, pattern: str, log) -> re.Match:
    line = proc.stdout.readline()
    found = re.fullmatch(pattern, line.rstrip("\n"))
    assert found, (line, log.read_text())
    return found


def _start(args: list[str], log, env: dict[str, str]) -> subprocess.Popen:
    # stderr to a file, not a pipe: the cluster's logging can never block on it
    return subprocess.Popen([sys.executable, "-m", "lbdask", *args], stdout=subprocess.PIPE, stderr=log.open("w"),
                            text=True, env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory, model, taef2_dir):
    tmp = tmp_path_factory.mktemp("http")
    dest = str(tmp / "arc")
    ids = build_serving_archive(dest, model, n=6)
    (tmp / "warm.txt").write_text("\n".join(PREWARMED) + "\n\n")
    env = subprocess_env()
    logs = SimpleNamespace(serve=tmp / "serve.txt", gateway=tmp / "gateway.txt")
    serve = _start(["serve", dest, "--workers", "1", "--model", "taef2", "--weights", str(taef2_dir),
                    "--http", "127.0.0.1:0", "--prewarm", str(tmp / "warm.txt")], logs.serve, env)
    procs = [serve]
    try:
        _line(serve, r"prewarmed 2 of 2 ids", logs.serve)
        address = _line(serve, rf"serving {re.escape(dest)} on (tcp://\S+) \(1 workers\)", logs.serve).group(1)
        _line(serve, r"dashboard: .*", logs.serve)
        first = _line(serve, r"http: http://127\.0\.0\.1:(\d+)", logs.serve).group(1)
        gateway = _start(["gateway", dest, "--scheduler", address, "--http", "127.0.0.1:0"], logs.gateway, env)
        procs.append(gateway)
        second = _line(gateway, r"http: http://127\.0\.0\.1:(\d+)", logs.gateway).group(1)
        yield SimpleNamespace(dest=dest, ids=ids, address=address, ports=[int(first), int(second)],
                              serve=serve, gateway=gateway, logs=logs, local=lbdask.open(dest, weights=taef2_dir))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def fetch(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def image(image_id: str) -> str:
    return "/images/" + urllib.parse.quote(image_id, safe="/")


def worker_stats(address: str) -> dict:
    with Client(address, timeout="30s") as client:
        [stats] = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]()).values()
    return stats


def test_prewarm_file_loads_exactly_the_listed_ids(served):
    before = worker_stats(served.address)
    assert before["prewarmed"] == len(PREWARMED) and before["requests"] == 0
    for image_id, hit in ((PREWARMED[0], True), (PREWARMED[1], True), ("g/002.png", False)):
        status, _, body = fetch(served.ports[0], image(image_id))
        assert status == 200 and body == served.local.read(image_id)
        after = worker_stats(served.address)
        hits = lambda s: s["image_hits"] + s["latent_hits"]  # noqa: E731
        assert (hits(after) - hits(before), after["misses"] - before["misses"]) == ((1, 0) if hit else (0, 1)), image_id
        before = after


def test_get_bytes_etag_and_cache_headers_equal_across_gateways(served):
    for image_id in ("g/003.png", "rgba.png", "kept.png"):
        answers = [fetch(port, image(image_id)) for port in served.ports for _ in range(2)]
        assert {status for status, _, _ in answers} == {200}
        assert {body for _, _, body in answers} == {served.local.read(image_id)}
        assert len({headers["Etag"] for _, headers, _ in answers}) == 1, image_id
        headers = answers[0][1]
        assert headers["Content-Type"] == "image/png"
        assert headers["Cache-Control"] == "public, max-age=86400"
    status, _, body = fetch(served.ports[1], "/images/g%2F003.png")   # a `/` sent encoded is the same id
    assert status == 200 and body == served.local.read("g/003.png")


def test_if_none_match_answers_304_without_the_image_and_head_sends_headers_only(served):
    status, headers, body = fetch(served.ports[0], image("rgba.png"))
    tag = headers["Etag"]
    for port in served.ports:
        status, again, empty = fetch(port, image("rgba.png"), headers={"If-None-Match": tag})
        assert (status, empty, again["Etag"]) == (304, b"", tag)
        assert fetch(port, image("rgba.png"), headers={"If-None-Match": '"other"'})[0] == 200
        status, head, nothing = fetch(port, image("rgba.png"), method="HEAD")
        assert (status, nothing, head["Etag"], int(head["Content-Length"])) == (200, b"", tag, len(body))


def test_unknown_ids_404_invalid_ids_400_other_errors_500(served, model):
    port = served.ports[1]
    assert fetch(port, image("no/such.png"))[0] == 404
    for bad in ("/images/", "/images/a/../g/003.png", "/images/%2E%2E/x.png", "/images/a%00b", "/images/" + "x" * 1100):
        status, _, body = fetch(port, bad)
        assert status == 400, (bad, body)
    status, _, body = fetch(port, image("broken.png"))   # a failed row reads as its raw bytes, as `lbdask read`
    assert (status, body) == (200, served.local.read("broken.png"))
    corrupt_latent(served.dest, "g/005.png", model)     # never read before: its checksum fails on the worker
    status, _, _ = fetch(port, image("g/005.png"))
    assert status == 500
    lines = [line for line in served.logs.gateway.read_text().splitlines() if "g/005.png" in line]
    assert len(lines) == 1, lines
    assert [fetch(p, "/healthz")[:1] for p in served.ports] == [(200,), (200,)]


def test_unreachable_archive_answers_503_with_retry_after(served):
    moved = served.dest + ".moved"
    os.rename(served.dest, moved)
    try:
        status, headers, _ = fetch(served.ports[0], image("g/004.png"))   # never read: must be fetched
    finally:
        os.rename(moved, served.dest)
    assert (status, headers.get("Retry-After")) == (503, "5")
    assert fetch(served.ports[0], image("g/004.png"))[0] == 200   # back once the archive is


def test_healthz_answers_503_once_the_cluster_is_gone(served):
    served.serve.send_signal(signal.SIGTERM)
    assert served.serve.wait(timeout=120) == 0
    assert "serving removed" in served.serve.stdout.read()   # the gateway thread stopped first
    assert fetch(served.ports[1], "/healthz")[0] == 503
    served.gateway.send_signal(signal.SIGTERM)
    assert served.gateway.wait(timeout=60) == 0   # (distributed's client logs the lost scheduler itself)


def test_prewarm_count_ranks_as_retier_does(tmp_path, model):
    """`--prewarm N`: the N readable ids with the most reads within retier's prewarm window."""
    from lbdask.access.log import AccessLog
    from lbdask.archive import Archive
    from lbdask.serve.prewarm import prewarm_ids

    dest = str(tmp_path / "arc")
    build_serving_archive(dest, model, n=3)
    log, now = AccessLog(Archive.open(dest).loc, "test"), time.time()
    reads = {"g/001.png": 3, "kept.png": 2, "g/000.png": 1, "broken.png": 9}   # broken.png: a failed row
    for image_id, n in reads.items():
        for _ in range(n):
            log.add(image_id, now)
    for _ in range(5):
        log.add("g/002.png", now - 10 * 86400)   # hot long ago, outside the window
    log.flush()
    assert prewarm_ids(dest, "2") == ["g/001.png", "kept.png"]
    assert prewarm_ids(dest, "10") == ["g/001.png", "kept.png", "g/000.png"]
