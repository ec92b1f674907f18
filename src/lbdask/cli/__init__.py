"""The `lbdask` command: one sub-module per subcommand, each with `add_parser` and `run`.

Errors a user can cause print as one line (`lbdask: error: ...`) with exit status 2;
`--debug` shows the traceback of anything else. The global options (`--debug`,
`--config-dir DIR`) are accepted before and after the subcommand. Subcommand modules import
torch, dask and numba only inside `run`, so `ls`, `report` and kept reads start fast.
A reader that stops early (`lbdask ls DEST | head`) ends the command quietly with status 0,
as a pipe expects.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lbdask.config import CONFIG_DIR_ENV
from lbdask.errors import LbdaskError

#: Subcommand modules under `lbdask.cli`, in the order `lbdask --help` lists them.
SUBCOMMANDS = ["migrate", "read", "ls", "report", "stats", "verify", "fidelity", "trace", "sim", "sim_cluster", "compact", "upgrade", "repair", "serve", "gateway", "retier"]


def add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """`--debug` and `--config-dir`, on the top-level parser and again on every subcommand.

    On a subcommand the defaults are suppressed, so an option given before the
    subcommand is not reset by the subcommand's parser.
    """
    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors",
                        **({"default": False} if top else default))
    parser.add_argument("--config-dir", metavar="DIR", help=f"folder of configuration files (sets {CONFIG_DIR_ENV}; "
                        "default: the configs shipped with lbdask)", **default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbdask", description="Latent-first image archive on Dask.")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        p = module.add_parser(sub)
        for nested in _parsers(p):
            add_global_options(nested, top=False)
        p.set_defaults(_run=module.run)
    return parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every parser nested under it (`lbdask trace generate`)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config_dir:
        # through the environment, so the worker processes of a local cluster read it too
        os.environ[CONFIG_DIR_ENV] = args.config_dir
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        stdout_to_devnull()
        return 0
    except LbdaskError as exc:
        if args.debug:
            raise
        print(f"lbdask: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lbdask: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(f"lbdask: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1


def stdout_to_devnull() -> None:
    """After the reader of stdout went away: point stdout at /dev/null, so that the final
    flush at interpreter exit does not raise BrokenPipeError again (Python's documented recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
