"""docs/configuration.md documents every flag, environment variable and config field."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from lbdask.archive import ArchiveConfig
from lbdask.cache.settings import CacheConfig
from lbdask.cache.tuner import TunerConfig
from lbdask.cli import build_parser
from lbdask.cluster.settings import ClusterSettings
from lbdask.models.cpu_memory import CpuMemorySettings
from lbdask.models.registry import ModelSpec, WeightsSource
from lbdask.representation.settings import JobSettings
from lbdask.serve.settings import HttpConfig, WorkerConfig
from lbdask.sim.trace import TraceConfig
from lbdask.tiering.policy import (
    ConvertPolicy,
    DemotePolicy,
    PrewarmPolicy,
    PromotePolicy,
    RetierPolicy,
    SourceCleanupPolicy,
)

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "configuration.md").read_text()
GLOBAL = {"--debug", "--config-dir"}


def parser_flags(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """Long option strings of every (nested) parser, by command path; --help left out."""
    found: dict[tuple[str, ...], set[str]] = {path: set()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.update(parser_flags(child, (*path, name)))
        else:
            found[path] |= {o for o in action.option_strings if o.startswith("--") and o != "--help"}
    return found


def documented_flags() -> dict[tuple[str, ...], set[str]]:
    """`--flags` in the first table column under each "### `lbdask ...`" heading."""
    sections = re.split(r"^### `lbdask", DOC.split("## Command-line flags", 1)[1], flags=re.M)[1:]
    found = {}
    for section in sections:
        heading, body = section.split("\n", 1)
        path = tuple(w for w in heading.split("`")[0].split() if re.fullmatch(r"[a-z][a-z-]*", w))
        found[path] = {m for line in body.splitlines() if line.startswith("| `")
                       for m in re.findall(r"`(--[a-z0-9-]+)", line.split("|")[1])}
    return found


def test_every_flag_of_every_subcommand_is_documented_and_nothing_else():
    parsers = parser_flags(build_parser())
    docs = documented_flags()
    assert docs[()] == parsers[()] == GLOBAL
    commands = {p for p in parsers if p} - {("trace",)}  # `trace` only groups generate / stats
    assert set(docs) - {()} == commands
    for path in commands:
        assert docs[path] == parsers[path] - GLOBAL, " ".join(path)


def test_every_environment_variable_the_code_reads_is_documented():
    names = set()
    for folder in ("src", "configs"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml"):
                names |= set(re.findall(r"\bLBDASK_[A-Z0-9_]+\b", path.read_text()))
    assert names >= {"LBDASK_CONFIG_DIR", "LBDASK_S3_ENDPOINT_URL", "LBDASK_TAEF2_WEIGHTS"}
    assert sorted(n for n in names if f"`{n}`" not in DOC) == []


@pytest.mark.parametrize("config", [JobSettings, ArchiveConfig, ClusterSettings, ModelSpec, WeightsSource,
                                    CpuMemorySettings, CacheConfig, TunerConfig, TraceConfig, RetierPolicy,
                                    DemotePolicy, PromotePolicy, ConvertPolicy, SourceCleanupPolicy, PrewarmPolicy,
                                    HttpConfig, WorkerConfig])
def test_every_config_field_is_documented(config):
    missing = [f.name for f in dataclasses.fields(config) if f"`{f.name}`" not in DOC]
    assert missing == []
