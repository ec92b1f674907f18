"""JobSettings: the refinement mode is validated on both paths (jobs.yaml and CLI overrides)."""
from __future__ import annotations

import pytest

from lbdask.errors import ConfigError
from lbdask.representation.settings import JobSettings


def test_refine_mode_defaults_to_qat_and_accepts_float():
    assert JobSettings().refine_mode == "qat"
    assert JobSettings().with_overrides(refine_mode="float").refine_mode == "float"


def test_an_unknown_refine_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="refine_mode must be qat or float"):
        JobSettings().with_overrides(refine_mode="plain")
