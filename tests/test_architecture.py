"""The layers of docs/architecture.md hold in the code: the core never imports a job or an
entry point, each package imports only what its row of the layer table allows, and no
module imports itself back through others. Every import counts, also one inside a function."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.imports import Layer, cycles, imports, layer_table, modules, package_of

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DOC = REPO / "docs" / "architecture.md"
BELOW_JOBS = ("foundation", "core")


def allowed(row, target: str) -> bool:
    """`target` (dotted, under lbdask) is the package itself, a listed package, or a listed module."""
    name = target.partition(".")[2] or "__init__"
    return "any" in row.may_import or any(name == m or name.startswith(m + ".") for m in row.may_import) \
        or name.split(".")[0] in row.may_import


def violations(found_imports: list, table: dict) -> list[str]:
    found = []
    for imp in found_imports:
        here, there = package_of(imp.source), package_of(imp.target)
        if here != there and not allowed(table[here], imp.target):
            found.append(f"{imp} (`{here}` may import: {', '.join(sorted(table[here].may_import)) or 'nothing'})")
    return found


@pytest.fixture(scope="module")
def table():
    return layer_table(DOC)


@pytest.fixture(scope="module")
def tree_imports():
    return imports(SRC)


def test_the_layer_table_lists_every_package_and_module_of_the_tree(table):
    tree = {package_of(name) for name in modules(SRC)}
    assert tree == set(table), f"in the tree, not in {DOC.name}: {sorted(tree - set(table))}; " \
                               f"in {DOC.name}, not in the tree: {sorted(set(table) - tree)}"
    assert {row.layer for row in table.values()} <= {"foundation", "core", "job", "entry"}


def test_the_core_never_imports_a_job_or_an_entry_point(table, tree_imports):
    upper = {p for p, row in table.items() if row.layer in ("job", "entry")}
    wrong = [str(imp) for imp in tree_imports
             if table[package_of(imp.source)].layer in BELOW_JOBS and package_of(imp.target) in upper]
    assert not wrong, "\n".join(wrong)


def test_jobs_never_import_the_entry_points(table, tree_imports):
    entry = {p for p, row in table.items() if row.layer == "entry"}
    wrong = [str(imp) for imp in tree_imports
             if table[package_of(imp.source)].layer == "job" and package_of(imp.target) in entry]
    assert not wrong, "\n".join(wrong)


def test_every_import_is_one_the_layer_table_allows(table, tree_imports):
    wrong = violations(tree_imports, table)
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back_through_others(tree_imports):
    edges = defaultdict(set)
    for imp in tree_imports:
        if not imp.source.startswith(imp.target + "."):  # a module's own package __init__ is not a cycle
            edges[imp.source].add(imp.target)
    assert not cycles(edges)


def test_the_checker_sees_an_import_inside_a_function(tmp_path):
    """The rules above are only as good as the import reader: on a made-up tree, a job imported
    inside a function, a relative import and a `from package import module` are all seen."""
    pkg = tmp_path / "lbdask"
    for folder in ("core_a", "job_b"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core_a" / "x.py").write_text("def f():\n    from lbdask.job_b import y\n    return y\n")
    (pkg / "core_a" / "z.py").write_text("from ..job_b.y import thing\n")
    (pkg / "job_b" / "y.py").write_text("from lbdask.core_a import x\nthing = 1\n")
    made_up = {"__init__": Layer("__init__", "entry", frozenset({"any"})),
               "core_a": Layer("core_a", "core", frozenset()), "job_b": Layer("job_b", "job", frozenset({"core_a"}))}
    wrong = violations(imports(tmp_path), made_up)
    assert len(wrong) == 2 and all("core_a" in w.split(" imports ")[0] for w in wrong), wrong
    assert [sorted(c) for c in cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})] == [["a", "b"]]



def test_every_file_docs_architecture_md_names_exists():
    """The concept table names files by path: a module moved or renamed without the doc fails here."""
    named = set(re.findall(r"`((?:src|tests|benchmarks)/[\w/]+\.py)`", DOC.read_text()))
    assert named, "the doc names no file: the pattern is wrong"
    assert sorted(p for p in named if not (REPO / p).is_file()) == []
