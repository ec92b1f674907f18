"""List-valued options, one way for every subcommand: `--x a b`, `--x a,b`, `--x a --x b`
(and any mix) all mean [a, b].

Parsing only splits; `list_values` converts in the subcommand's `run`, so a bad value is a
one-line `lbdask: error: ...` (exit 2) like every other user error.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from lbdask.errors import ConfigError

T = TypeVar("T")


def split_values(values: Sequence[str]) -> list[str]:
    """Words of space- and comma-separated values, empty ones dropped."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


class ListOption(argparse.Action):
    """nargs="+" whose values may also be comma-separated; repeating the option adds to the
    list (the default is replaced, not extended)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        before = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, before + split_values(values))


def add_list_option(parser: argparse.ArgumentParser, *flags: str, default: Sequence[str] | None = None,
                    help: str = "", **kwargs: Any) -> argparse.Action:
    """Add a list option (see ListOption); `default` is a list of words."""
    text = f"{help} (space- or comma-separated)" if help else "space- or comma-separated values"
    return parser.add_argument(*flags, action=ListOption, default=None if default is None else list(default),
                               help=text, **kwargs)


def list_values(values: Sequence[str], convert: Callable[[str], T], option: str, expected: str) -> list[T]:
    """`convert` each word; ConfigError naming the option and the bad word otherwise."""
    out = []
    for v in split_values(values):
        try:
            out.append(convert(v))
        except (ValueError, TypeError, KeyError):
            raise ConfigError(f"{option}: expected {expected}, got {v!r}") from None
    return out


def choice(allowed: Sequence[str]) -> Callable[[str], str]:
    """A converter accepting only the words in `allowed`."""
    def check(word: str) -> str:
        if word not in allowed:
            raise ValueError(word)
        return word
    return check


def check_cluster_options(args: argparse.Namespace) -> None:
    """`--workers` sizes the embedded cluster: at least 1, and not together with `--scheduler`."""
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers is not None and args.scheduler:
        raise ConfigError("--workers sizes the local cluster; it cannot be used with --scheduler")
