"""docs/serving.md runs as written: every ```python and ```bash block of it, against a real
archive and a real `lbdask serve` cluster (issue 23, item 7). New blocks are picked up as added.

Conventions (also in docs/testing.md, "Code blocks of docs/serving.md"):
- Blocks name the archive `DEST`, the address of a cluster that serves it `SCHEDULER` and one
  of its image ids `ID`: shell variables in bash blocks, names already bound in Python blocks.
- `<!-- not run: REASON -->` on the line before a block skips it (an S3 bucket, a Kubernetes
  cluster: keep that set small).
- `<!-- until stopped -->` before a bash block: one command that serves until SIGTERM. These
  run first, each alone (no runtime on the cluster): the test waits for its first line of
  output, sends SIGTERM and requires exit status 0.
- Then `lbdask serve DEST --scheduler SCHEDULER` serves the archive and the other blocks run
  in document order, each in a fresh folder as a user would run them: bash blocks with
  `bash -euo pipefail`, Python blocks in a new interpreter; neither has the checkout on its
  path (only the installed lbdask: `import serve` must fail as it does for a user). Any
  error fails that block's test.
Other fenced blocks (no language, yaml, text) are illustrations and are not run.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import REPO, DaskProcesses, subprocess_env
from tests.support.serve import build_serving_archive

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "serving.md"
MARK = re.compile(r"<!--\s*(not run:\s*(?P<reason>\S.*?)|until stopped)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int            # of the opening fence, 1-based
    lang: str            # python | bash
    code: str
    mark: str | None     # None, "not run" or "until stopped"

    def __str__(self) -> str:
        return f"{self.lang}@{DOC.name}:{self.line}"


def doc_blocks(text: str) -> list[Block]:
    """The ```python and ```bash blocks of `text`, with the marker on the line before each."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```\s*(\w*)\s*", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in ("python", "bash"):
            before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            mark = MARK.fullmatch(before.strip())
            kind = None if mark is None else ("not run" if mark.group("reason") else "until stopped")
            blocks.append(Block(i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n", kind))
        i = end + 1
    return blocks


BLOCKS = doc_blocks(DOC.read_text())
SERVERS = [b for b in BLOCKS if b.mark == "until stopped"]
OTHERS = [b for b in BLOCKS if b.mark is None]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model) -> tuple[str, str]:
    dest = str(tmp_path_factory.mktemp("docs") / "archive")
    ids = build_serving_archive(dest, model, n=2)
    return dest, ids[0]


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskProcesses]:
    """One worker that already holds the archive's model (as after a migration): every deploy
    of the doc shares it (docs/serving.md, "Deploying") instead of loading it again."""
    from distributed import Client

    from lbdask.models.resident import ResidentModel

    procs = DaskProcesses(subprocess_env())
    try:
        procs.start_worker()
        procs.wait_workers(1)
        with Client(procs.address, timeout="20s") as client:
            client.register_plugin(ResidentModel("taef2"))
        yield procs
    finally:
        procs.close()


#: runs a Python block (argv[1], named argv[2]) with DEST, SCHEDULER and ID bound
RUN_PYTHON = ("import os, sys; names = {k: os.environ[k] for k in ('DEST', 'SCHEDULER', 'ID')}; "
              "exec(compile(open(sys.argv[1]).read(), sys.argv[2], 'exec'), {**names, '__name__': '__docs__'})")


def _env(archive: tuple[str, str], cluster: DaskProcesses) -> dict[str, str]:
    """A user's environment: the installed lbdask (its `lbdask` on PATH), not the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "DEST": archive[0], "ID": archive[1], "SCHEDULER": cluster.address}


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A serving command, returned once it printed its first line (the address it serves on)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env)
    first = proc.stdout.readline()
    assert first.startswith("serving "), (first, log.read_text())
    return proc


def _stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.read_text()


def test_the_doc_has_blocks_and_every_skip_says_why():
    assert SERVERS and OTHERS, "docs/serving.md lost its runnable examples"
    for block in BLOCKS:
        assert block.mark != "until stopped" or block.lang == "bash", f"{block}: only a bash block can serve"


@pytest.mark.parametrize("block", SERVERS, ids=str)
def test_serving_block(block, archive, cluster, tmp_path):
    command = " ".join(ln.rstrip("\\").strip() for ln in block.code.splitlines() if not ln.lstrip().startswith("#"))
    log = tmp_path / "stderr.txt"
    proc = _start(["bash", "-euo", "pipefail", "-c", f"exec {command}"], _env(archive, cluster), log)
    try:
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(archive, cluster, tmp_path_factory) -> Iterator[dict[str, str]]:
    """DEST served on the cluster for the reading blocks (after every serving block ran)."""
    env = _env(archive, cluster)
    log = tmp_path_factory.mktemp("served") / "stderr.txt"
    proc = _start([sys.executable, "-m", "lbdask", "serve", archive[0], "--scheduler", cluster.address], env, log)
    try:
        yield env
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("block", OTHERS, ids=str)
def test_block(block, served, tmp_path):
    if block.lang == "bash":
        args = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        (tmp_path / "block.py").write_text(block.code)
        args = [sys.executable, "-c", RUN_PYTHON, "block.py", str(block)]
    out = subprocess.run(args, cwd=tmp_path, env=served, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{block} exited {out.returncode}:\n{out.stderr}"
