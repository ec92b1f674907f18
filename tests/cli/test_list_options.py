"""CLI plumbing every subcommand shares: list options and a reader that closes the pipe early."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lbdask import cli
from lbdask.archive import Archive, CatalogRow
from lbdask.cli.options import add_list_option, choice, list_values
from lbdask.errors import ConfigError
from tests.support.cluster import subprocess_env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("trace")
    add_list_option(p, "--alpha", default=["adaptive", "0"])
    return p


@pytest.mark.parametrize("argv", [
    ["t", "--alpha", "0.5", "1", "adaptive"],
    ["t", "--alpha", "0.5,1,adaptive"],
    ["t", "--alpha", "0.5,1", "adaptive"],
    ["t", "--alpha", "0.5", "--alpha", "1,", "--alpha", "adaptive"],
])
def test_list_options_take_spaces_commas_and_repeats_alike(argv):
    assert parser().parse_args(argv).alpha == ["0.5", "1", "adaptive"]


def test_list_option_default_is_replaced_not_extended():
    assert parser().parse_args(["t"]).alpha == ["adaptive", "0"]
    assert parser().parse_args(["t", "--alpha", "1"]).alpha == ["1"]


def test_list_values_convert_or_name_the_bad_word():
    assert list_values(["0.1,0.2", "0.3"], float, "--cache-frac", "fractions") == [0.1, 0.2, 0.3]
    with pytest.raises(ConfigError, match=r"--cache-frac: expected fractions, got 'x'"):
        list_values(["0.1,x"], float, "--cache-frac", "fractions")
    with pytest.raises(ConfigError, match=r"--status: expected a or b, got 'c'"):
        list_values(["a,c"], choice(["a", "b"]), "--status", "a or b")


def test_every_list_option_of_every_subcommand_takes_both_forms():
    """sim --cache-frac/--policy/--alpha, fidelity --bits/--steps, ls --status: one helper."""
    p = cli.build_parser()
    for argv, dest in ((["sim", "t.npz", "--cache-frac", "0.01,0.05", "0.1"], "cache_frac"),
                       (["sim", "t.npz", "--alpha", "0,1", "adaptive"], "alpha"),
                       (["sim", "t.npz", "--policy", "lru,s3fifo", "lru"], "policy"),
                       (["fidelity", "src", "--bits", "16", "8,6"], "bits"),
                       (["fidelity", "src", "--steps", "0,10", "30"], "steps"),
                       (["ls", "dest", "--status", "kept,failed", "refused"], "status")):
        assert len(getattr(p.parse_args(argv), dest)) == 3, argv


def test_ls_into_a_closed_pipe_exits_quietly(tmp_path):
    dest = str(tmp_path / "arc")
    arc = Archive.create(dest, {"name": "none", "fingerprint": "f" * 64})
    # far more than a pipe buffer (64 KiB), so `ls` is still writing when `head` has gone
    rows = [CatalogRow(id=f"dir/image-{i:05d}.png", status="refused", reason="not a regular file: a fifo")
            for i in range(4000)]
    arc.commit("b0", rows)
    err = tmp_path / "err.txt"
    done = subprocess.run(["bash", "-c", f'set -o pipefail; "{sys.executable}" -m lbdask ls "{dest}" 2>"{err}" | head -n 2'],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, err.read_text()
    assert done.stdout.splitlines()[1].startswith("dir/image-00000.png\trefused")
    assert err.read_text() == ""
