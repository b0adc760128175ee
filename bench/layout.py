"""The house's layout in numbers: files and lines per package, the longest functions, import cycles.

    python bench/layout.py [ROOT]     # ROOT: a checkout (default: this one)

BENCHMARKS.md "Layout" records it before and after a restructuring.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_import_graph import cycles  # noqa: E402

PACKAGES = ("pipeline", "stages", "data")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(root))
    import tests.test_import_graph as graph  # the graph of ROOT's packages

    graph.ROOT = root
    funcs = []
    print("| package | files | lines |\n|---|---|---|")
    for pkg in PACKAGES:
        files = sorted((root / pkg).rglob("*.py"))
        print(f"| {pkg}/ | {len(files)} | {sum(len(f.read_text().splitlines()) for f in files)} |")
        for f in files:
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    funcs.append((node.end_lineno - node.lineno + 1, f"{f.relative_to(root)}:{node.name}"))
    funcs.sort(reverse=True)
    print("\nlongest functions: " + ", ".join(f"{name} ({n})" for n, name in funcs[:3]))
    found = cycles(graph.import_graph())
    print(f"import cycles: {len(found)}" + "".join(f"\n  {' → '.join(c)}" for c in found))


if __name__ == "__main__":
    main()
