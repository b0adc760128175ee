"""The import graph of the project's packages has no cycles (issue: "the house, step two").

Every ``import``/``from … import`` counts, at module level or inside a function (a lazy import is still a
dependency); imports under ``if TYPE_CHECKING:`` do not (they never run). Also checked: the layering rule
"``pipeline/train`` may import ``pipeline/objectives``, never the reverse".
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "data")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _runtime_imports(tree: ast.AST):
    """Import nodes outside ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package[: len(package) - node.level + 1] if node.level else []
                mod = ".".join([*base, *([node.module] if node.module else [])])
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_objectives_never_import_train():
    graph = import_graph()
    offending = {
        m: sorted(t for t in ts if t.startswith("pipeline.train"))
        for m, ts in graph.items()
        if m.startswith("pipeline.objectives")
    }
    assert {m: t for m, t in offending.items() if t} == {}


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _package(module: str) -> str:
    """``pipeline.train.loop`` → ``pipeline.train``; top-level modules of ``pipeline`` stay themselves."""
    parts = module.split(".")
    if parts[0] != "pipeline":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 and (ROOT / "pipeline" / parts[1]).is_dir() else module


def test_no_cycles_between_packages():
    """Importing ``pipeline.train.x`` runs ``pipeline/train/__init__.py`` too, so the packages themselves
    (``pipeline.train``, ``pipeline.objectives``, ``data``, …) must form no cycle either."""
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(_package(module), set()).update(_package(t) for t in targets)
    for name, targets in packages.items():
        targets.discard(name)
    packages = {n: {t for t in ts if t in packages} for n, ts in packages.items()}
    assert cycles(packages) == []
