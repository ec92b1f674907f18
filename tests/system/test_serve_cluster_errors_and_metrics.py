"""Serving through real `dask scheduler` / `dask worker` processes, what users and operators see of
it: errors (one line, the right type), worker logs, Prometheus series, the dashboard page."""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from distributed import Client
from distributed.core import rpc
from prometheus_client.parser import text_string_to_metric_families

import lbdask
from lbdask.errors import IntegrityError, ServingNotInstalledError, StoreError
from lbdask.routing.ring import ring_from_workers
from lbdask.serve.client import AsyncServingClient
from lbdask.serve.deploy import install
from lbdask.serve.metrics import COUNTERS
from lbdask.serve.plugin import PLUGIN_NAME
from tests.support.cluster import LogsSince
from tests.support.dashboard import get_page
from tests.support.serve import BROKEN_PNG, build_serving_archive, corrupt_latent, wait_for
from tests.support.serve_cluster import settings

pytestmark = pytest.mark.slow


def test_unknown_id_is_a_key_error_naming_it(served, archive):
    with lbdask.open(archive[0], scheduler=served.address) as box:
        with pytest.raises(KeyError) as err:
            box.read("no/such/image.png")
    assert "no/such/image.png" in str(err.value)
    out = subprocess.run([sys.executable, "-m", "lbdask", "read", archive[0], "nope.png", "--scheduler",
                          served.address], capture_output=True, text=True, env=served.env, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("lbdask: error:") and "nope.png" in out.stderr


def test_corrupted_latent_fails_alone(served, tmp_path, model, taef2_dir):
    dest = str(tmp_path / "bad")
    ids = build_serving_archive(dest, model, n=3)
    corrupt_latent(dest, ids[1], model)
    local = lbdask.open(dest, weights=taef2_dir)
    with lbdask.open(dest, scheduler=served.address) as box:   # a second archive on the same cluster
        with pytest.raises(IntegrityError, match="checksum"):
            box.read(ids[1])
        assert box.read(ids[0]) == local.read(ids[0])
        assert box.read(ids[2]) == local.read(ids[2])


def test_a_failed_input_reads_as_its_raw_bytes_on_every_path(served, archive):
    """A failed input (not a decodable PNG, stored raw by the migration): `lbdask read` gives its
    raw bytes, and so does every serving path, never a NotFoundError or exit 2."""
    dest = archive[0]
    assert lbdask.open(dest).read("broken.png") == BROKEN_PNG
    with lbdask.open(dest, scheduler=served.address) as box:
        assert box.read("broken.png") == BROKEN_PNG
        assert box.read_many(["broken.png", "kept.png"])[0] == BROKEN_PNG

    async def read_async():
        async with await AsyncServingClient.connect(dest, served.address) as abox:
            return await abox.read("broken.png")

    assert asyncio.run(read_async()) == BROKEN_PNG
    out = subprocess.run([sys.executable, "-m", "lbdask", "read", dest, "broken.png", "--scheduler", served.address],
                         capture_output=True, env=served.env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == BROKEN_PNG and b"raw bytes" in out.stderr


def test_user_errors_are_one_warning_line_on_the_worker(served, tmp_path, model):
    """An unknown id and a checksum mismatch of one id: the worker logs each once, in one line
    (WARNING, lbdask.serve.handlers), no ERROR traceback; the caller still gets the exception."""
    dest = str(tmp_path / "bad")
    ids = build_serving_archive(dest, model, n=2)
    corrupt_latent(dest, ids[0], model)
    logs = LogsSince(served.logs)
    with lbdask.open(dest, scheduler=served.address) as box:
        with pytest.raises(KeyError):
            box.read("log/unknown.png")
        with pytest.raises(IntegrityError):
            box.read(ids[0])
    text = logs.new()
    assert "Traceback" not in text and "Exception while handling" not in text, text
    for image_id, error in (("log/unknown.png", "UnknownImageError"), (ids[0], "IntegrityError")):
        [line] = [line for line in text.splitlines() if image_id in line]
        assert line.startswith(f"lbdask_read {image_id!r}: {error}: "), line


def test_no_serving_is_a_one_line_error_naming_the_fix(served, archive, taef2_dir):
    """With serving gone (`lbdask serve` stopped), every read path raises
    ServingNotInstalledError naming `lbdask serve`, never returns None; the CLI exits 2 with one
    line, and each worker asked logs distributed's "No handler" in one line. A reply that is not
    bytes is an error too."""
    dest, ids = archive
    with Client(served.address, timeout="20s") as client:
        client.unregister_worker_plugin(PLUGIN_NAME)
        try:
            logs = LogsSince(served.logs)
            fix = f"lbdask serve {dest} --scheduler {served.address}"
            with lbdask.open(dest, scheduler=served.address) as box:
                for call in (lambda: box.read(ids[0]), lambda: box.read("no/such.png"),
                             lambda: box.read_many(ids[:2]), lambda: box.prewarm(ids[:2])):
                    with pytest.raises(ServingNotInstalledError, match="no lbdask serving") as err:
                        call()
                    assert fix in str(err.value)

            async def read_async():
                async with await AsyncServingClient.connect(dest, served.address) as abox:
                    return await abox.read(ids[0])

            with pytest.raises(ServingNotInstalledError):
                asyncio.run(read_async())
            out = subprocess.run([sys.executable, "-m", "lbdask", "read", dest, ids[0], "--scheduler", served.address],
                                 capture_output=True, text=True, env=served.env, timeout=120)
            assert out.returncode == 2 and out.stdout == ""
            assert out.stderr.splitlines() == [f"lbdask: error: no lbdask serving on {served.address}: "
                                               f"start `{fix}`"]
            text = logs.new()
            assert "No handler lbdask_read found" in text and "Traceback" not in text, text
            # a handler of another version answering with something else: an error, never image bytes
            client.run(lambda dask_worker: dask_worker.handlers.update(lbdask_read=lambda **_: {"png": b""}))
            with lbdask.open(dest, scheduler=served.address) as box:
                with pytest.raises(StoreError, match="answered lbdask_read with a dict, not bytes"):
                    box.read(ids[0])
        finally:
            install(client, dest, settings(spillover="off"), "taef2", str(taef2_dir))


def test_worker_metrics_endpoint(served, archive):
    with Client(served.address, timeout="20s") as client:
        ports = client.run(lambda dask_worker: dask_worker.http_server.port)
        [scraped] = [w for w, port in ports.items() if port == served.metrics_port]
        # the ring may give the scraped worker none of the archive's ids (random ports): an id it
        # owns is read too, so its request count is > 0 on every run
        ring = ring_from_workers(sorted(ports))
        probe = next(p for p in (f"probe/{k}.png" for k in itertools.count()) if ring.owner(p) == scraped)
        with lbdask.open(archive[0], scheduler=served.address) as box:
            box.read_many(archive[1])
            with pytest.raises(KeyError):
                box.read(probe)
        text = urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).read().decode()
        counted = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]()["requests"], workers=[scraped])
    for name in ("requests_total", "image_hits_total", "latent_hits_total", "misses_total", "alpha",
                 "decode_queue_depth", "t_fetch_ms", "spillovers_total", "coalesced_total"):
        assert f"lbdask_serve_{name}{{worker=" in text, name
    requests = [line for line in text.splitlines() if line.startswith("lbdask_serve_requests_total{")]
    assert float(requests[0].rsplit(" ", 1)[1]) == counted[scraped] > 0


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value of the Prometheus page on `port`, parsed as Prometheus does."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def tier_counts(samples, name: str, worker: str) -> dict[str, float]:
    """tier -> `name`'s value for `worker` (a histogram's _count, say)."""
    return {dict(labels)["tier"]: v for (n, labels), v in samples.items()
            if n == name and dict(labels).get("worker") == worker}


def test_read_latency_series_and_serving_page(served, archive, taef2_dir):
    """Fresh serving workers; reads go to the scraped worker only (its RPC, as the client sends it), so
    the other two never decode: their T_decode must show no value, not the configured 40 ms."""
    dest, ids = archive
    latent = next(i for i in ids if i != "kept.png")

    async def read_on(addr: str, image_id: str) -> None:
        async with rpc(addr) as worker:
            await worker.lbdask_read(dest=dest, image_id=image_id)

    with Client(served.address, timeout="20s") as client:
        install(client, dest, settings(spillover="off"), "taef2", str(taef2_dir))
        ports = client.run(lambda dask_worker: dask_worker.http_server.port)
    [scraped] = [w for w, port in ports.items() if port == served.metrics_port]
    before = tier_counts(scrape(served.metrics_port), "lbdask_serve_read_seconds_count", scraped)
    asyncio.run(read_on(scraped, latent))           # a miss: fetch + decode
    asyncio.run(read_on(scraped, latent))           # now cached
    with pytest.raises(Exception, match="nope.png"):
        asyncio.run(read_on(scraped, "nope.png"))   # an error
    after = scrape(served.metrics_port)
    counts = tier_counts(after, "lbdask_serve_read_seconds_count", scraped)
    assert set(before) == set(counts) == {"image", "latent", "miss", "error"}
    assert counts["miss"] == before["miss"] + 1 and counts["error"] == before["error"] + 1
    assert sum(counts.values()) == sum(before.values()) + 3
    assert tier_counts({k: v for k, v in after.items() if ("le", "+Inf") in k[1]}, "lbdask_serve_read_seconds_bucket",
                       scraped) == counts
    assert after[("lbdask_serve_requests_total", frozenset({("worker", scraped)}))] == 3
    text = urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).read().decode()
    kinds = {f.name: f.type for f in text_string_to_metric_families(text) if f.name.startswith("lbdask_serve_")}
    assert kinds["lbdask_serve_read_seconds"] == "histogram"   # and the *_total series are counters (rate())
    assert {k for k, kind in kinds.items() if kind == "counter"} == {f"lbdask_serve_{n}" for n, _ in COUNTERS.values()}

    # the scheduler's /metrics: every worker's series, as of its last heartbeat (about 1 s)
    others = sorted(set(ports) - {scraped})

    def scheduler_caught_up() -> bool:
        seen = scrape(served.dashboard_port)
        return tier_counts(seen, "lbdask_cluster_serve_read_seconds_count", scraped).get("miss") == counts["miss"]
    assert wait_for(scheduler_caught_up, 30)
    cluster = scrape(served.dashboard_port)
    assert {dict(labels)["worker"] for name, labels in cluster if name == "lbdask_cluster_serve_requests_total"} \
        == set(ports)
    decode_ms = {dict(labels)["worker"] for name, labels in cluster if name == "lbdask_cluster_serve_t_decode_ms"}
    assert decode_ms == {scraped}   # the others never decoded: no sample, not the starting guess

    base = f"http://127.0.0.1:{served.dashboard_port}/lbdask/serving"
    status, kind, html = get_page(served.dashboard_port, "/lbdask/serving")
    assert status == 200 and kind.startswith("text/html") and "3 serving worker(s)" in html
    assert "Bokeh.embed.embed_items" in html
    [bokehjs] = re.findall(r'<script src="(/static/js/bokeh\.min\.js[^"]*)"', html)
    assert get_page(served.dashboard_port, bokehjs)[0] == 200    # BokehJS from the dashboard itself
    [shown] = re.findall(r'\["t_decode",(\[[^]]*\])\]', html)   # the table's column in the document
    workers = json.loads(urllib.request.urlopen(base + "/workers.json", timeout=10).read())
    by_worker = dict(zip(workers["worker"], json.loads(shown)))
    assert [by_worker[w] for w in others] == ["\u2013", "\u2013"] and float(by_worker[scraped]) > 0
    assert dict(zip(workers["worker"], workers["t_decode"])) == by_worker
    stats = json.loads(urllib.request.urlopen(base + ".json", timeout=10).read())["workers"]
    assert [stats[w]["t_decode_ms"] for w in others] == [None, None] and stats[scraped]["t_decode_ms"] > 0

    def history_has_the_miss() -> bool:
        history = json.loads(urllib.request.urlopen(base + "/history.json", timeout=10).read())
        return any(p is not None for p in history["miss_p95"]) and max(history["miss_frac"]) > 0
    assert wait_for(history_has_the_miss, 30)
