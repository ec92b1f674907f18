"""configs/models.yaml, weight resolution, NotFoundError/ConfigError, fingerprints across processes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from lbdask.errors import ConfigError, NotFoundError
from lbdask.models import device_class, load_model
from lbdask.models.registry import REPO_ROOT, WeightsSource, candidate_folders, load_registry


def test_registry_names_and_geometry():
    models = load_registry().models
    assert {"taef2", "flux1-schnell", "sd35", "sdxl"} <= set(models)
    assert models["taef2"].architecture == "tae" and models["taef2"].latent_channels == 32
    assert models["sd35"].weights.hub_id and models["sd35"].weights.subfolder == "vae"
    for spec in models.values():
        assert spec.pad_multiple % spec.downsample == 0


def write_config(folder, body: str):
    (folder / "models.yaml").write_text(textwrap.dedent(body))


def test_invalid_registry_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(tmp_path))
    write_config(tmp_path, """
        models:
          bad: {architecture: tae, latent_channels: 32, downsample: 8, pad_multiple: 12}
    """)
    with pytest.raises(ConfigError, match="pad_multiple 12"):
        load_model("bad")
    write_config(tmp_path, """
        models:
          bad: {architecture: tae, latent_channels: 32, colour: red}
    """)
    with pytest.raises(ConfigError, match="colour"):
        load_model("bad")


OLD_AND_NEW = """
    models:
      old: {backend: tae, latent_channels: 32, decode_backend: eager, weights: {local: W}}
      new: {architecture: tae, latent_channels: 32, decode_engine: eager, weights: {local: W}}
"""


def test_old_key_spellings_load_the_same_spec_with_a_deprecation_warning(taef2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(tmp_path))
    write_config(tmp_path, OLD_AND_NEW.replace("W", str(taef2_dir)))
    with pytest.warns(DeprecationWarning) as caught:
        models = load_registry().models
    assert sorted(str(w.message).split("key ")[1].split(" ")[0] for w in caught) == ["'backend'", "'decode_backend'"]
    assert all("'architecture'" in str(w.message) or "'decode_engine'" in str(w.message) for w in caught)
    assert models["old"] == models["new"]
    assert (models["old"].architecture, models["old"].decode_engine) == ("tae", "eager")


def test_old_and_new_spelling_together_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_CONFIG_DIR", str(tmp_path))
    write_config(tmp_path, """
        models:
          both: {backend: tae, architecture: tae, latent_channels: 32}
    """)
    with pytest.raises(ConfigError, match="'backend' is the old spelling of 'architecture'"):
        load_registry()


def test_missing_weights_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(NotFoundError) as err:
        load_model("taef2", weights=tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "--weights" in message


def test_env_override(taef2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDASK_TAEF2_WEIGHTS", str(tmp_path))
    with pytest.raises(NotFoundError, match="LBDASK_TAEF2_WEIGHTS"):
        load_model("taef2")
    linked = tmp_path / "w"
    linked.mkdir()
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        (linked / name).symlink_to(taef2_dir / name)
    monkeypatch.setenv("LBDASK_TAEF2_WEIGHTS", str(linked))
    assert load_model("taef2").latent_channels == 32


def test_relative_folders_try_repo_root_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = WeightsSource(local="../shared/models/taef2")
    assert candidate_folders(source, explicit=False) == [
        (REPO_ROOT / "../shared/models/taef2").resolve(),
        (tmp_path / "../shared/models/taef2").resolve(),
    ]
    assert candidate_folders(source, explicit=True) == [(tmp_path / "../shared/models/taef2").resolve()]


def test_unknown_name_is_not_found():
    with pytest.raises(NotFoundError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")


def test_corrupt_weights_are_a_clear_error(taef2_dir, tmp_path):
    shutil.copy(taef2_dir / "taef2_encoder.pth", tmp_path / "taef2_encoder.pth")
    torch.save({"0.weight": torch.zeros(1)}, tmp_path / "taef2_decoder.pth")
    with pytest.raises(ConfigError, match="decoder state_dict"):
        load_model("taef2", weights=tmp_path)


def test_fingerprint_stable_across_processes_and_sensitive_to_weights(taef2_dir, tmp_path):
    model = load_model("taef2", weights=taef2_dir)
    here = model.fingerprint
    # the one archives store: the fingerprint config keeps its stored key `backend` (the
    # architecture, docs/glossary.md), or every existing archive's latents become unreadable
    assert model.config["backend"] == "tae"
    assert here == "df3b57240f0b3d79d6e6eaa404b7984b5a827f5f3c96a6009a20074873920479"
    code = f"from lbdask.models import load_model; print(load_model('taef2', weights={str(taef2_dir)!r}).fingerprint)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert other.stdout.strip() == here
    shutil.copy(taef2_dir / "taef2_encoder.pth", tmp_path / "taef2_encoder.pth")
    state = torch.load(taef2_dir / "taef2_decoder.pth", weights_only=True)
    state["19.bias"] = state["19.bias"] + 1e-3
    torch.save(state, tmp_path / "taef2_decoder.pth")
    assert load_model("taef2", weights=tmp_path).fingerprint != here


def test_device_class_names_hardware_and_torch():
    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert device_class("cpu").startswith("cpu-") and device_class("cpu").endswith(f"-torch{major_minor}")
