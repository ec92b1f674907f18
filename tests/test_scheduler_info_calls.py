"""Every `scheduler_info(` call in src/ asks for all workers (`n_workers=-1`): the distributed
releases of 2025 to mid-2026, which the project's `distributed>=2025.1` allows, report at most
five by default, so a call without it plans, watches or sizes a large cluster as five workers
(issue 25)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def calls_without_all_workers(source: str, name: str) -> list[str]:
    """`name:line` of each `scheduler_info(...)` call in `source` without `n_workers=-1`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "scheduler_info":
            n = next((k.value for k in node.keywords if k.arg == "n_workers"), None)
            if not (n is not None and isinstance(n, ast.UnaryOp) and ast.literal_eval(n) == -1):
                found.append(f"{name}:{node.lineno}")
    return found


def test_every_scheduler_info_call_in_src_asks_for_all_workers():
    files = sorted(SRC.rglob("*.py"))
    calls = [f for f in files if "scheduler_info(" in f.read_text()]
    assert len(calls) >= 4, "the migration, the cluster watch, connect and serve ask for worker info"
    wrong = [hit for f in calls for hit in calls_without_all_workers(f.read_text(), str(f.relative_to(SRC)))]
    assert not wrong, f"scheduler_info() without n_workers=-1 (plans a large cluster as five workers): {wrong}"


def test_the_checker_flags_a_call_without_n_workers_or_with_another_count():
    source = ("a = client.scheduler_info()\nb = client.scheduler_info(n_workers=5)\n"
              "c = client.scheduler_info(n_workers=-1)\nd = c.get('workers')\n")
    assert calls_without_all_workers(source, "m.py") == ["m.py:1", "m.py:2"]
