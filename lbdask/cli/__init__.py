"""The `lbdask` command: one sub-module per subcommand, each with `add_parser` and `run`.

Errors a user can cause print as one line (`lbdask: error: ...`) with exit status 2;
`--debug` shows the traceback of anything else.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import LbdaskError

#: Subcommand modules under `lbdask.cli`, in the order `lbdask --help` lists them.
SUBCOMMANDS = ["migrate", "read", "ls", "report", "verify", "fidelity", "trace", "sim", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbdask", description="Latent-first image archive on Dask.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
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


if __name__ == "__main__":
    sys.exit(main())
