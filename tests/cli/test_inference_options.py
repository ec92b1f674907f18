"""`--runtime` on every command that runs a model; `--backend`, its old spelling, still works with a warning."""
from __future__ import annotations

import pytest

from lbdask.cli import build_parser

COMMANDS = [["read", "archive", "x.png"], ["migrate", "src", "dst"], ["verify", "archive"], ["serve", "archive"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_runtime_flag_reaches_the_runtime_option(argv, capsys):
    assert build_parser().parse_args([*argv, "--runtime", "openvino"]).runtime == "openvino"
    assert build_parser().parse_args(argv).runtime is None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_old_backend_flag_sets_the_same_value_and_names_the_new_one(argv, capsys):
    with pytest.warns(DeprecationWarning, match="--runtime"):
        args = build_parser().parse_args([*argv, "--backend", "torch"])
    assert args.runtime == "torch"
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--backend is deprecated" in err and "use --runtime" in err


def test_old_backend_flag_checks_its_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["read", "archive", "x.png", "--backend", "tpu"])
    assert exc.value.code == 2 and "tpu" in capsys.readouterr().err
