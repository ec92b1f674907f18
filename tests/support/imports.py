"""The import graph of a source tree, read with `ast` (every import: module level, inside
functions, under `if TYPE_CHECKING:`), and the layer table of docs/architecture.md.

tests/test_architecture.py checks the rules with them; the checker is also run on a small
made-up tree there, so a checker that finds nothing cannot pass unnoticed.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One `import` statement's target, as a dotted module name, and where it is."""

    source: str   # importing module, e.g. lbdask.reader
    target: str   # imported module (or package), e.g. lbdask.image.kept
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


def modules(src: Path, top: str = "lbdask") -> dict[str, Path]:
    """Dotted name -> file of every module under `src/<top>` (packages by their __init__)."""
    found = {}
    for path in sorted((src / top).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__")] = path
    return found


def imports(src: Path, top: str = "lbdask") -> list[Import]:
    """Every import of a `top` module by a `top` module, absolute or relative, anywhere in the file."""
    mods = modules(src, top)
    out = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in sorted(set(_targets(node, package, mods))):
                if target.split(".")[0] == top and target != name:
                    out.append(Import(name, target, path, node.lineno))
    return out


def _targets(node: ast.AST, package: str, mods: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(parent + ([base] if base else []))
    # `from pkg import module` imports the module; `from module import name` the module
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def package_of(module: str) -> str:
    """The first-level name under the top package: lbdask.image.kept -> image, lbdask -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@dataclass(frozen=True)
class Layer:
    """One row of the layer table: a package, its layer, the packages it may import."""

    package: str
    layer: str
    may_import: frozenset[str]


def layer_table(doc: Path, heading: str = "## Layers") -> dict[str, Layer]:
    """The table under `heading` in `doc`: | `package` | layer | `a`, `b` or - | what |."""
    text = doc.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    rows = {}
    for line in text[start:end if end != -1 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        package = cells[0].strip("`")
        names = {"any"} if cells[2] == "any" else set(re.findall(r"`([\w.]+)`", cells[2]))
        rows[package] = Layer(package, cells[1], frozenset(names))
    return rows
