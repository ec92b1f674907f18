"""The worker plugin that installs serving on every worker; workers that join later get it too.

Registering it (`lbdask serve`, or `client.register_plugin(ServePlugin(...))` on any
cluster) builds one ServingWorker per worker, its RPC handlers and its metrics; removing it
(`client.unregister_worker_plugin(PLUGIN_NAME)`) tears all of that down again. The plugin
carries the settings and model configuration files the driver loaded, so a worker uses the
driver's `--config-dir` / `--config`, never its own environment's.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from distributed import Worker
from distributed.diagnostics.plugin import WorkerPlugin

from lbdask.archive import Archive
from lbdask.config import adopt
from lbdask.errors import LbdaskError
from lbdask.models.resident import PLUGIN_NAME as MODEL_PLUGIN
from lbdask.models.resident import ResidentModel, model_configs
from lbdask.serve import handlers, metrics
from lbdask.serve.archives import FetchHook
from lbdask.serve.settings import ServeSettings
from lbdask.serve.spill import Spillover
from lbdask.serve.worker import PLUGIN_NAME, ServingWorker


class ModelSource:
    """The worker's resident model: the migration plugin's if it holds the same model, else its own.

    Without `--model` the first archive served names the model (its catalog records it).
    """

    def __init__(self, worker: Worker, model: str | None, weights: str | None,
                 precision: str | None = None, runtime: str | None = None,
                 configs: dict[str, Any] | None = None) -> None:
        self.worker, self.name, self.weights = worker, model, weights
        self.precision, self.runtime = precision, runtime  # None: configs/models.yaml
        self.configs = configs  # the driver's models.yaml and cpu_memory.yaml (ResidentModel)
        self._resident: ResidentModel | None = None
        self._lock = threading.Lock()

    def resident(self) -> ResidentModel:
        with self._lock:
            if self._resident is None:
                if self.name is None:
                    raise LbdaskError("no model chosen: pass --model or read an archive first")
                shared = self.worker.plugins.get(MODEL_PLUGIN)
                if (isinstance(shared, ResidentModel) and shared.model_name == self.name
                        and (shared.precision, shared.runtime, shared.configs)
                        == (self.precision, self.runtime, self.configs)):
                    self._resident = shared
                else:
                    own = ResidentModel(self.name, self.weights, self.precision, self.runtime, self.configs)
                    own.load(self.worker)
                    self._resident = own
            return self._resident

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        with self.resident().use() as model:
            yield model

    def check(self, archive: Archive) -> None:
        """Load the model the archive needs (first archive picks it) and match fingerprints."""
        if self.name is None:
            self.name = archive.model_info["name"]
        model = self.resident().get()
        archive.check_model(model.fingerprint, model.name)


class ServePlugin(WorkerPlugin):
    """Installs a ServingWorker (cache, pools, model, handlers, metrics) on every worker.

    `configs` default to the creating process's model configuration (`model_configs`);
    `fetch_hook` runs before each archive read (benchmarks: serve.store_latency; default none).
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, settings: ServeSettings, model: str | None = None, weights: str | None = None,
                 preload: Sequence[tuple[str, dict | None]] = (), configs: dict[str, Any] | None = None,
                 fetch_hook: FetchHook | None = None) -> None:
        self.settings, self.model, self.weights, self.preload = settings, model, weights, list(preload)
        self.configs = model_configs() if configs is None else configs
        self.fetch_hook = fetch_hook
        self.source: ModelSource | None = None
        self.serving: ServingWorker | None = None
        self._collector: metrics.Collector | None = None

    def __getstate__(self) -> dict[str, Any]:  # ship the recipe, never a worker's state
        return {"settings": self.settings, "model": self.model, "weights": self.weights, "preload": self.preload,
                "configs": self.configs, "fetch_hook": self.fetch_hook}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def setup(self, worker: Worker) -> None:
        adopt(self.configs)  # also for the other models re-encoded rows need, loaded later
        wc = self.settings.worker
        source = self.source = ModelSource(worker, self.model, self.weights, wc.precision, wc.runtime, self.configs)
        serving = ServingWorker(self.settings, source.use, address=worker.address, model_check=source.check,
                                fetch_hook=self.fetch_hook)
        serving.spill = Spillover(serving, worker)
        handlers.install(worker, serving)
        self._collector = metrics.register(serving)
        worker.metrics[metrics.HEARTBEAT_KEY] = lambda _worker: metrics.heartbeat(serving)   # to the scheduler
        self.serving = serving
        for dest, options in self.preload:  # open archives and load the model off the event loop
            serving.io.submit(serving.archives.open, dest, options)

    def teardown(self, worker: Worker) -> None:
        handlers.remove(worker)
        worker.metrics.pop(metrics.HEARTBEAT_KEY, None)
        if self._collector is not None:
            metrics.unregister(self._collector)
        if self.serving is not None:
            self.serving.close()
            self.serving = None
