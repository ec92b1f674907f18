"""`--precision` and `--runtime`: one definition shared by every command that runs a model.

`migrate`, `read`, `verify` (and `serve`) call `add_inference_options(parser)`; the values
reach `load_model(precision=..., runtime=...)`, where None means configs/models.yaml.
`--backend` is the old spelling of `--runtime`, accepted with a warning until the next release.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

#: lbdask.models.precision.PRECISIONS / RUNTIMES, not imported here: lbdask.models pulls in
#: torch, and a CLI module imports nothing heavy at top level (tests/cli/test_startup.py;
#: tests/models/test_inference.py checks that the two agree).
PRECISIONS = ("fp32", "bf16", "fp16")
RUNTIMES = ("torch", "openvino")


class DeprecatedSpelling(argparse.Action):
    """Stores like the option it was renamed to, after one stderr line and a DeprecationWarning."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        message = f"{option_string} is deprecated and will be removed in the next release; use {self.new}"
        print(f"lbdask: {message}", file=sys.stderr)
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """Add `--precision fp32|bf16|fp16|auto` and `--runtime torch|openvino|auto` to `parser`."""
    parser.add_argument("--precision", choices=("auto", *PRECISIONS), default=None,
                        help="encode/decode precision; auto = bf16 where the CPU has native bf16 or on CUDA, "
                             "else fp32 (default: configs/models.yaml, auto)")
    parser.add_argument("--runtime", choices=("auto", *RUNTIMES), default=None,
                        help="inference runtime; auto = OpenVINO on the CPU when installed "
                             "(pip install lbdask[openvino]), else torch (default: configs/models.yaml, auto)")
    parser.add_argument("--backend", dest="runtime", choices=("auto", *RUNTIMES), action=DeprecatedSpelling,
                        new="--runtime", help="deprecated spelling of --runtime")


def announce_inference(model) -> None:
    """Print the runtime and precision a command's model runs with, once, on stderr."""
    print(f"lbdask: {model.name} runs {model.inference.label} on {model.device} ({model.inference.reason})",
          file=sys.stderr)
