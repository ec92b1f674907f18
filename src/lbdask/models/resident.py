"""A Dask worker plugin that loads the VAE once per worker process and keeps it resident.

Shared by the migration job (encode tasks) and the serving path (decode tasks).

Tasks fetch the model from the plugin instead of receiving it as an argument, so the
weights never travel with a task; the worker's `MemoryBudget` admits model calls by
their estimated peak memory (one at a time by default), so the other worker threads stay
free for PNG decoding and shard writing meanwhile and concurrent calls never together
exceed the share of the worker's memory limit the model may use.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from distributed import Worker, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from lbdask.config import adopt, snapshot
from lbdask.models.cpu_memory import CpuMemorySettings
from lbdask.models.memory_budget import MemoryBudget, budget_bytes, call_peak_bytes, check_budget
from lbdask.models.registry import ModelsConfig

PLUGIN_NAME = "lbdask-resident-model"

#: The configuration files a worker reads to load a model; a plugin carries the driver's.
MODEL_CONFIGS: tuple[tuple[str, type], ...] = (("models", ModelsConfig), ("cpu_memory", CpuMemorySettings))


def model_configs() -> dict[str, Any]:
    """This process's validated `models.yaml` and `cpu_memory.yaml`, for a worker plugin to carry."""
    return snapshot(*MODEL_CONFIGS)


class ResidentModel(WorkerPlugin):
    """Loads `load_model(model, weights=..., precision=..., runtime=...)` on each worker at registration or join.

    `configs` (default: the creating process's, see `model_configs`) are adopted by the worker
    before loading, so the driver's `--config-dir` applies there, whatever the worker's environment.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, model: str, weights: str | None = None, precision: str | None = None,
                 runtime: str | None = None, configs: dict[str, Any] | None = None) -> None:
        self.model_name = model
        self.configs = model_configs() if configs is None else configs
        self.weights = weights
        self.precision, self.runtime = precision, runtime
        self.model: Any = None
        self.error: BaseException | None = None
        self.budget = MemoryBudget(None)  # replaced in setup() by the worker's memory limit
        self.cpu_threads = 0  # torch intra-op threads for CPU models (0: leave torch's default)
        #: model calls a worker runs at once, memory permitting: one, since one call already
        #: keeps all the worker's cores (or its GPU) busy
        self.max_calls = 1
        self._idle = threading.Event()  # cleared while a load runs: `get` waits for it
        self._idle.set()

    def __getstate__(self) -> dict[str, Any]:  # ship the recipe, never a loaded model
        return {"model": self.model_name, "weights": self.weights, "precision": self.precision, "runtime": self.runtime,
                "configs": self.configs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    async def setup(self, worker: Worker) -> None:
        """Load the model in a thread: the worker's event loop keeps answering the scheduler
        (heartbeats) and other plugins' RPCs through a load that can take minutes."""
        self._idle.clear()
        await asyncio.to_thread(self.load, worker)

    def load(self, worker: Worker) -> None:
        """Load the model on the worker's best device (blocking); a failure of the load itself is
        kept and raised by tasks, one of the configuration raised here."""
        try:
            import torch

            from lbdask.models.loader import load_model

            adopt(self.configs)
            if not torch.cuda.is_available():
                self.cpu_threads = max(1, worker.state.nthreads)
            try:
                self.model = load_model(self.model_name, weights=self.weights, precision=self.precision,
                                        runtime=self.runtime)
                # calls admitted by their estimated peak, and only if the largest fits at all
                limit = worker.memory_manager.memory_limit
                check_budget(limit, self.model.spec, self.model.name)
                self.budget = MemoryBudget(budget_bytes(limit), self.max_calls)
            except Exception as exc:  # noqa: BLE001 - surfaced by the first task that needs the model
                self.error = exc
        finally:
            self._idle.set()

    def get(self) -> Any:
        """The loaded model, or the loading error re-raised in the calling task (called from a
        task thread while the model loads, it waits for the load)."""
        self._idle.wait()
        if self.error is not None:
            raise self.error
        return self.model

    @contextlib.contextmanager
    def use(self, pixels: int | None = None) -> Iterator[Any]:
        """Use of the model from the calling task thread for a call on images of `pixels`
        (padded; None: the largest untiled call), with all the worker's cores, once the
        worker's memory budget admits the call's estimated peak.

        torch's intra-op thread count is per OS thread under OpenMP, and Dask starts workers
        with OMP_NUM_THREADS=1: set it in the task thread, or a CPU model runs on one core.
        """
        model = self.get()
        with self.budget.reserve(call_peak_bytes(model.spec, pixels)):
            if self.cpu_threads:
                import torch

                torch.set_num_threads(self.cpu_threads)
            yield model


def resident_model() -> ResidentModel:
    """The plugin instance on the current worker (inside a task)."""
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("the lbdask model plugin is not registered on this worker")
    return plugin


def model_info() -> dict[str, Any]:
    """Dask task: the resident model's archive metadata and device class (`model-info`)."""
    model = resident_model().get()
    return {**model.model_info, "device_class": model.device_class, "inference": model.inference.as_dict()}
