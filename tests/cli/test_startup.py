"""`ls`, `report`, `--help` and reading a kept image start without torch, dask, numba, zarr or numpy;
a no-op `migrate` rerun without torch.

Each command runs in a fresh interpreter (a subprocess), which then reports which heavy
packages it imported; the start-up times are in benchmarks/cli_startup.py.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.cluster import subprocess_env
from tests.support.reader import build_archive

HEAVY = ("torch", "dask", "distributed", "numba", "zarr", "numpy")  # zarr: only when a latent is read

PROBE = """
import json, sys
from lbdask.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,)


def imported_by(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus_dir, taef2_dir):
    return build_archive(str(tmp_path_factory.mktemp("startup") / "arc"), corpus_dir, taef2_dir)


@pytest.fixture(scope="module")
def dest(built):
    return built[0]


@pytest.mark.parametrize("argv", [["ls", "{dest}"], ["ls", "{dest}", "--json"], ["report", "{dest}"],
                                  ["report", "{dest}", "--json"], ["read", "{dest}", "kept.png", "-o", "{out}"],
                                  ["stats", "{dest}"], ["stats", "{dest}", "--json"],
                                  ["--help"]])
def test_command_imports_no_torch_dask_numba_zarr_or_numpy(argv, dest, tmp_path):
    got = imported_by(*(a.format(dest=dest, out=tmp_path / "out.png") for a in argv))
    allowed = ["numpy"] if argv[0] == "report" else []  # the report's statistics; ls and kept reads need none
    assert got == {"code": 0, "heavy": allowed}


def test_reading_a_latent_does_import_torch(dest, taef2_dir, tmp_path):
    # the probe sees imports: decoding a latent needs the model
    got = imported_by("read", dest, "opaque.png", "-o", str(tmp_path / "o.png"), "--weights", str(taef2_dir))
    assert got["code"] == 0 and {"torch", "zarr", "numpy"} <= set(got["heavy"])


def test_a_no_op_migrate_rerun_imports_no_torch(built, taef2_dir, tmp_path):
    # every source is committed: the rerun says so before a cluster starts or torch is imported
    dest, sources, _ = built
    for image_id, data in sources.items():
        (tmp_path / image_id).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / image_id).write_bytes(data)
    got = imported_by("migrate", str(tmp_path), dest, "--no-progress", "--batch-size", "4", "--weights", str(taef2_dir))
    assert got["code"] == 0 and "torch" not in got["heavy"]
