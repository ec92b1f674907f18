"""Loading a CPU model keeps freed tensor memory in glibc's heap, as configs/cpu_memory.yaml says.

Each case runs in a fresh interpreter (malloc settings are per process) and reads glibc's
own accounting (mallinfo2) around a 256 MB tensor allocated and freed before and after
`load_model`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from lbdask.config import DEFAULT_CONFIG_DIR
from lbdask.errors import ConfigError
from tests.support.cluster import subprocess_env
from tests.support.malloc_probe import SIZE, has_mallinfo2

pytestmark = pytest.mark.skipif(not has_mallinfo2(), reason="needs glibc >= 2.33")

PROBE = r"""
import json, sys
from tests.support.malloc_probe import large_tensor_probe
before = large_tensor_probe()
from lbdask.models import load_model
load_model("taef2", weights=sys.argv[1], device="cpu")
print(json.dumps({"before": before, "after": large_tensor_probe()}))
"""


def run_probe(taef2_dir, script: str = PROBE) -> dict:
    """`script` in a fresh interpreter (malloc settings are per process); its last line, parsed."""
    env = subprocess_env()
    done = subprocess.run([sys.executable, "-c", script, str(taef2_dir)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


RELEASE_PROBE = r"""
import json, sys
import numpy as np
from tests.support.malloc_probe import resident_bytes
from lbdask.models import load_model
model = load_model("taef2", weights=sys.argv[1], device="cpu", runtime="torch")
latent = np.zeros((1, *model.latent_shape(512, 512)), np.float32)
before = resident_bytes()
model.decode(latent, (512, 512))   # ~0.4 GB of activations, freed by the end of the pass
print(json.dumps({"after": resident_bytes() - before}))
"""


def config_copy(tmp_path, text: str):
    folder = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    (folder / "cpu_memory.yaml").write_text(text)
    return folder


def test_loading_a_cpu_model_keeps_freed_tensors_in_the_heap(taef2_dir):
    got = run_probe(taef2_dir)
    assert got["before"]["mmapped_during"] >= SIZE  # glibc's default: a large tensor is its own mmap
    assert got["after"]["mmapped_during"] < SIZE  # after load_model it comes from the heap ...
    assert got["after"]["free_in_heap_after"] >= SIZE  # ... and stays there once freed


def test_turned_off_in_the_config_leaves_glibc_defaults(taef2_dir, tmp_path, monkeypatch):
    folder = config_copy(tmp_path, "retain_freed_memory: false\ntrim_threshold_mb: 1024\n")
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(folder))
    got = run_probe(taef2_dir)
    assert got["after"]["mmapped_during"] >= SIZE


@pytest.mark.parametrize("release_above_mb, released", [(64, True), (4096, False)])
def test_a_cpu_pass_gives_freed_activations_back_above_the_threshold(taef2_dir, tmp_path, monkeypatch,
                                                                     release_above_mb, released):
    """The activations a 512 px decode frees leave the resident set after the pass only
    when they exceed `release_above_mb`; below it the heap keeps them."""
    folder = config_copy(tmp_path, f"retain_freed_memory: true\ntrim_threshold_mb: 1024\n"
                                   f"release_above_mb: {release_above_mb}\n")
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(folder))
    grown = run_probe(taef2_dir, RELEASE_PROBE)["after"]
    if released:
        assert grown < 64 << 20
    else:
        assert grown >= 256 << 20


def test_a_threshold_mallopt_cannot_take_is_a_config_error(tmp_path, monkeypatch):
    from lbdask.config import load_config
    from lbdask.models.cpu_memory import CpuMemorySettings

    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(config_copy(tmp_path, "trim_threshold_mb: 4096\n")))
    with pytest.raises(ConfigError, match="trim_threshold_mb"):
        load_config("cpu_memory", CpuMemorySettings)
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(config_copy(tmp_path / "b", "release_above_mb: -1\n")))
    with pytest.raises(ConfigError, match="release_above_mb"):
        load_config("cpu_memory", CpuMemorySettings)
