"""The resident model loads in a thread: the worker's event loop keeps answering meanwhile
(heartbeats, RPCs), and tasks that need the model wait for the load."""
from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from unittest import mock

from distributed.utils_test import gen_cluster

from lbdask.models.registry import load_registry
from lbdask.models.resident import PLUGIN_NAME, ResidentModel, resident_model


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=120)
async def test_the_worker_answers_while_its_model_loads(c, s, a):
    loading, release, released = threading.Event(), threading.Event(), []
    model = SimpleNamespace(spec=load_registry().models["taef2"], name="taef2")

    def slow_load(*args, **kwargs):
        loading.set()
        # a load on the event loop blocks this very loop (in-process cluster): nothing releases it
        released.append(release.wait(30))
        return model

    with mock.patch("lbdask.models.loader.load_model", slow_load):
        registering = asyncio.ensure_future(c.register_plugin(ResidentModel("taef2")))
        assert await asyncio.to_thread(loading.wait, 30)
        answered = await c.run(lambda: "answered")         # a round trip through the worker's loop
        needs_model = c.submit(lambda: resident_model().get().name, pure=False)   # waits for the load
        release.set()
        await registering
    assert answered == {a.address: "answered"} and released == [True]
    assert await needs_model == "taef2" and a.plugins[PLUGIN_NAME].get() is model
