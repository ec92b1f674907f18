"""Load `configs/*.yaml` into typed dataclasses, failing at load time with a clear error.

Each module that owns a configuration file declares a dataclass for it and calls
`load_config(name, cls)`; unknown keys and wrong types are rejected by name. Worker plugins
carry the files their workers read (`snapshot` on the driver, `adopt` on the worker), so a
worker of an existing cluster uses the driver's `--config-dir`, not its own environment.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import types
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from lbdask.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variable naming another folder of configuration files (`lbdask --config-dir DIR` sets it).
CONFIG_DIR_ENV = "LBDASK_CONFIG_DIR"


def _default_config_dir() -> Path:
    """The default configs: `lbdask/configs/` inside an installed wheel (package data, built
    from the repository's top-level `configs/`), else `configs/` of the checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs"
    return packaged if packaged.is_dir() else here.parents[1] / "configs"  # src/lbdask -> checkout


#: The default configuration files shipped with lbdask.
DEFAULT_CONFIG_DIR = _default_config_dir()

#: name -> parsed YAML a driver shipped to this (worker) process; read instead of its own files
_adopted: dict[str, Any] = {}


def config_dir() -> Path:
    """The folder that holds the YAML configuration files."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def config_path(name: str) -> Path:
    """`<config dir>/<name>.yaml`, or `name` itself when it is a YAML path."""
    return Path(name) if name.endswith((".yaml", ".yml")) else config_dir() / f"{name}.yaml"


def read_yaml(name: str) -> Any:
    """Parse `configs/<name>.yaml` (or an explicit path) and return plain data; a name whose
    contents a driver shipped (`adopt`) returns those."""
    if name in _adopted:
        return copy.deepcopy(_adopted[name])
    return _read_own(name)


def _read_own(name: str) -> Any:
    """This process's own file of `name` (its config dir or environment), ignoring `adopt`."""
    import yaml  # here: `lbdask ls` and kept reads read no config and start faster without it

    path = config_path(name)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def load_config(name: str, cls: type[T]) -> T:
    """Read `configs/<name>.yaml` and build `cls` from it, validated; errors name the file."""
    return build(cls, read_yaml(name), where=str(config_path(name)))


def snapshot(*files: tuple[str, type]) -> dict[str, Any]:
    """The validated contents of the named configuration files as this process reads them
    (`--config-dir` included), for a worker plugin to carry to processes that `adopt` them."""
    data = {name: read_yaml(name) for name, _ in files}
    for name, cls in files:
        build(cls, data[name], where=str(config_path(name)))
    return data


def adopt(data: dict[str, Any]) -> None:
    """Read these contents (a driver's `snapshot`) instead of this process's own files from now
    on, where they differ: a worker sharing the driver's process (an in-process cluster) and
    reading the same files adopts nothing, so its later `--config-dir` or environment still counts."""
    for name, contents in data.items():
        try:
            own = _read_own(name)
        except ConfigError:
            own = None
        if own == contents:
            _adopted.pop(name, None)
        else:
            _adopted[name] = copy.deepcopy(contents)


def build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, checking keys and field types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    data = _renamed_keys(data, getattr(cls, "RENAMED_KEYS", {}), where)
    hints = typing.get_type_hints(cls)
    # a field named after a Python keyword takes a trailing underscore (`from_` is YAML key `from`)
    fields = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[field.name] = _coerce(hints[field.name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key '{name}'")
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def _renamed_keys(data: dict, renamed: Mapping[str, str], where: str) -> dict:
    """`data` with each old key spelling (a class's `RENAMED_KEYS`, old -> new) read as the new
    one, with a DeprecationWarning: a renamed key keeps working for one release."""
    old = [key for key in renamed if key in data]
    if not old:
        return data
    data = dict(data)
    for key in old:
        new = renamed[key]
        if new in data:
            raise ConfigError(f"{where}: '{key}' is the old spelling of '{new}'; give only '{new}'")
        deprecated(f"{where}: key '{key}' is deprecated and will be removed in the next release; use '{new}'")
        data[new] = data.pop(key)
    return data


def deprecated(message: str, stacklevel: int = 3) -> None:
    """One DeprecationWarning and the same line in the log (also on a worker, where warnings
    are not shown)."""
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)
    log.warning("%s", message)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return origin(_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        inner = args[1] if len(args) == 2 else Any
        return {k: _coerce(inner, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value
