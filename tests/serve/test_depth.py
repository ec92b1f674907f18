"""The decode queue depth spillover decides on (ServingWorker.depth) is counted from the
decision to decode here and returns to 0 after every decode ends, however it ends: hypothesis
draws bursts of decodes that succeed, fail their checksum, fail in the model, or are cancelled
(before or after reaching the model executor). That a burst whose fetches end together now
spills is tested on real worker processes (tests/system/test_serve_cluster.py)."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lbdask.errors import IntegrityError
from lbdask.latent.codec import LatentCodec
from lbdask.serve.settings import ServeSettings
from lbdask.serve.worker import ServingWorker
from tests.support.serve import build_serving_archive
from tests.support.serve import wait_for as wait_until


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model):
    dest = str(tmp_path_factory.mktemp("serve-depth") / "arc")
    return dest, build_serving_archive(dest, model, n=1)


def serve_settings(**worker) -> ServeSettings:
    s = ServeSettings()
    s.worker = dataclasses.replace(s.worker, **worker)
    return s


OUTCOMES = ("ok", "checksum", "model", "cancel")


class Gate:
    """The model context of the serving worker below: closed, the model call waits (as behind another)."""

    def __init__(self, model) -> None:
        self.model, self.open = model, threading.Event()

    @contextlib.contextmanager
    def __call__(self):
        assert self.open.wait(60), "the gate was never opened"
        yield self.model


@pytest.fixture(scope="module")
def gated(model, archive):
    gate = Gate(model)
    rt = ServingWorker(serve_settings(max_batch=1), gate)
    dest, ids = archive
    good = rt.fetch(dest, ids[0], None)
    bad_sum = dataclasses.replace(good, latent=dataclasses.replace(good.latent, checksum="0" * 16))
    c, h, w = good.latent.data.shape   # a valid latent of a channel count the model cannot take
    bad_model = dataclasses.replace(good, latent=LatentCodec(16).encode(np.zeros((c + 1, h, w), np.float32)))
    yield rt, gate, {"ok": good, "checksum": bad_sum, "model": bad_model, "cancel": good}
    rt.close()


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=6), late=st.booleans())
def test_depth_returns_to_zero_however_decodes_end(gated, burst, late):
    """`late`: cancel once every decode that reaches the model executor waits there (the
    executor drops a cancelled request it has not started, and finishes one it has)."""
    rt, gate, stored = gated
    runs = len(burst) - burst.count("checksum")   # reach the model executor (checksum fails before)

    async def main():
        gate.open.clear()   # every decode of the burst is in flight at once
        tasks = [asyncio.ensure_future(rt.decode(stored[o])) for o in burst]
        await asyncio.sleep(0)   # each task ran up to its first await: counted from the decision
        assert rt.depth == len(burst)
        while late and rt.decoder.depth < runs:
            await asyncio.sleep(0.005)
        for task, outcome in zip(tasks, burst):
            if outcome == "cancel":
                task.cancel()
        await asyncio.sleep(0)   # the cancelled ones have ended; the model is still held
        assert runs - burst.count("cancel") <= rt.depth <= len(burst) - burst.count("cancel")
        gate.open.set()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    done = asyncio.run(main())
    assert rt.depth == 0
    assert rt.stats()["queue_depth"] == 0
    assert wait_until(lambda: rt.decoder.depth == 0)   # a cancelled running request still finishes
    for outcome, result in zip(burst, done):
        expected = {"ok": bytes, "checksum": IntegrityError, "model": ValueError,
                    "cancel": asyncio.CancelledError}[outcome]
        assert isinstance(result, expected), (outcome, result)
