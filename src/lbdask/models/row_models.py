"""The model that decodes a given latent row: the one whose fingerprint the row carries.

An archive starts with one model; `lbdask retier` re-encode adds more (its model table,
`lbdask.archive.model_table`). Readers keep their own one-model path for rows of the
archive's model (no lookup, no extra load) and ask `RowModels` only for rows of another
model: each such model is loaded once, as its table entry says, and its fingerprint is
checked. A model that cannot be loaded is a one-line error naming it. Nothing here
imports torch until a model is loaded.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lbdask.archive import Archive, CatalogRow
from lbdask.archive.model_table import describe, require_model
from lbdask.errors import LbdaskError, ModelMismatchError


def load_entry(entry: dict[str, Any], **options: Any) -> Any:
    """Load the model a table entry describes (`load.model`, `load.weights`) and check its
    fingerprint; ModelMismatchError naming the model when it cannot be loaded or differs."""
    from lbdask.models import load_model

    fp = str(entry["fingerprint"])
    load = entry.get("load") or {"model": entry["name"], "weights": None}
    try:
        model = load_model(load["model"], weights=load.get("weights"), **options)
    except (LbdaskError, OSError) as exc:
        raise ModelMismatchError(f"model {describe(entry, fp)} cannot be loaded: {str(exc).splitlines()[0]}") from None
    if model.fingerprint != fp:
        raise ModelMismatchError(f"model {describe(entry, fp)} loaded from {load['model']} has fingerprint "
                                 f"{model.fingerprint[:12]}: its weights or config changed")
    return model


class RowModels:
    """Models of one archive by fingerprint, each loaded once (thread-safe).

    `primary()` returns the archive's own model (the caller's usual, already checked one).
    """

    def __init__(self, archive: Archive, primary: Callable[[], Any], **options: Any) -> None:
        self.archive = archive
        self._primary = primary
        self._fingerprint = archive.model_info.get("fingerprint")
        self._options = options  # device / precision / runtime, as load_model takes them
        self._others: dict[str, Any] = {}
        self._lock = threading.Lock()

    def for_row(self, row: CatalogRow) -> Any:
        """The model that wrote `row`'s latent."""
        fp = row.model_fingerprint
        if not fp or fp == self._fingerprint:
            return self._primary()
        return self.get(fp)

    def get(self, fingerprint: str) -> Any:
        """A model of the archive's table by fingerprint (loaded on first use)."""
        if fingerprint == self._fingerprint:
            return self._primary()
        with self._lock:
            model = self._others.get(fingerprint)
            if model is None:
                model = load_entry(require_model(self.archive, fingerprint), **self._options)
                self._others[fingerprint] = model
        return model
