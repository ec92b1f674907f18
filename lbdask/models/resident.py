"""A Dask worker plugin that loads the VAE once per worker process and keeps it resident.

Shared by the migration job (encode tasks) and the serving path (decode tasks).

Tasks fetch the model from the plugin instead of receiving it as an argument, so the
weights never travel with a task; a lock serialises model calls inside one worker so
the other worker threads stay free for PNG decoding and shard writing meanwhile.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from distributed import Worker, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "lbdask-resident-model"


class ResidentModel(WorkerPlugin):
    """Loads `load_model(model, weights=..., precision=..., runtime=...)` on each worker at registration or join."""

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, model: str, weights: str | None = None, precision: str | None = None,
                 runtime: str | None = None) -> None:
        self.model_name = model
        self.weights = weights
        self.precision, self.runtime = precision, runtime
        self.model: Any = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.cpu_threads = 0  # torch intra-op threads for CPU models (0: leave torch's default)

    def __getstate__(self) -> dict[str, Any]:  # ship the recipe, never a loaded model
        return {"model_name": self.model_name, "weights": self.weights, "precision": self.precision, "runtime": self.runtime}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_name"], state["weights"], state.get("precision"), state.get("runtime"))

    def setup(self, worker: Worker) -> None:
        """Load the model on the worker's best device; a failure is kept and raised by tasks."""
        import torch

        from .loader import load_model
        from .memory_budget import check_budget

        if not torch.cuda.is_available():
            self.cpu_threads = max(1, worker.state.nthreads)
        try:
            self.model = load_model(self.model_name, weights=self.weights, precision=self.precision, runtime=self.runtime)
            # one call at a time (self.lock), and only if one fits in the worker's memory
            check_budget(worker.memory_manager.memory_limit, self.model.spec, self.model.name)
        except Exception as exc:  # noqa: BLE001 - surfaced by the first task that needs the model
            self.error = exc

    def get(self) -> Any:
        """The loaded model, or the loading error re-raised in the calling task."""
        if self.error is not None:
            raise self.error
        return self.model

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        """Exclusive use of the model from the calling task thread, with all the worker's cores.

        torch's intra-op thread count is per OS thread under OpenMP, and Dask starts workers
        with OMP_NUM_THREADS=1: set it in the task thread, or a CPU model runs on one core.
        """
        model = self.get()
        with self.lock:
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
