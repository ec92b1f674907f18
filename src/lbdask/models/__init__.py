"""VAE models behind one interface: `load_model(name_or_path) -> LatentModel`.

Attributes load lazily (PEP 562): `lbdask.models.row_models` or `.registry` must not pull in
torch when `lbdask read` only returns a kept image (tests/cli/test_startup.py).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {"LatentModel": "lbdask.models.latent_model", "device_class": "lbdask.models.identity",
          "load_model": "lbdask.models.loader"}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'lbdask.models' has no attribute {name!r}")
