"""The package's shape: no import cycles, no private names across modules, ops registered on import.

The layers contract itself (``[tool.importlinter]`` in pyproject.toml) runs in CI as
``lint-imports``; these tests check what that contract does not: cycles inside a
layer and private cross-module imports, both counting function-local imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "formal"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """Every (module, imported name) a module imports from inside the package, at any depth."""
    graph: dict[str, set[tuple[str, str | None]]] = {}
    for mod, path in mods.items():
        found: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "formal":
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add((sub, None) if sub in mods else (node.module, alias.name))
            elif isinstance(node, ast.ImportFrom) and node.level:
                found.add(("<relative>", None))
            elif isinstance(node, ast.Import):
                found.update((a.name, None) for a in node.names if a.name.split(".")[0] == "formal")
        graph[mod] = found
    return graph


def test_imports_are_absolute() -> None:
    graph = _imports(_modules())
    relative = sorted(m for m, deps in graph.items() if ("<relative>", None) in deps)
    assert relative == [], f"relative imports in {relative}"


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: {t for t, _ in deps if t in mods and t != m} for m, deps in _imports(mods).items()}
    # a package's __init__ re-exporting its children is not a cycle of logic
    for m in graph:
        graph[m] = {
            t for t in graph[m] if not (m.startswith(t + ".") and mods[t].name == "__init__.py")
        }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules() -> None:
    mods = _modules()
    bad = sorted(
        f"{m} imports {t}.{name}"
        for m, deps in _imports(mods).items()
        for t, name in deps
        if name and name.startswith("_") and not name.startswith("__") and t != m
    )
    assert bad == [], "private names imported across modules: " + "; ".join(bad)


def test_import_formal_registers_every_op() -> None:
    """In a fresh interpreter, ``import formal`` alone makes every op's rules available."""
    script = textwrap.dedent(
        """
        import formal
        from formal.core.rules import registered_ops
        from formal.core.activations import relu
        from formal.core.network import Network, Node
        from formal.core.numbers import BINARY32
        from formal.core.qarray import QArray
        import numpy as np
        from fractions import Fraction

        x = QArray.from_fractions(np.array([[Fraction(1), Fraction(2)]], dtype=object))
        w = QArray.from_fractions(np.array([[Fraction(1, 2), Fraction(1, 4)]], dtype=object))
        nodes = [
            Node("x", "input", (), (2,)),
            Node("w", "param", (), (1, 2), (("name", "0.weight"),)),
            Node("wt", "transpose", ("w",), (2, 1), (("perm", (1, 0)),)),
            Node("y", "matmul", ("x", "wt"), (1,)),
            Node("z", "act", ("y",), (1,), (("activation", relu()),)),
        ]
        net = Network(
            nodes=tuple(nodes),
            output="z",
            inputs=x,
            params={"0.weight": w},
            numbers=BINARY32,
            param_order=("0.weight",),
            trainable=("0.weight",),
        )
        v = formal.check(net, proxy="pytorch")
        print(v.method, v.differentiable)
        print(sorted(registered_ops("exact")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    first, ops = proc.stdout.splitlines()[:2]
    assert first.split()[1] == "True"
    for op in ("linear", "matmul", "conv2d", "avgpool2d", "maxpool2d", "act", "pad", "transpose"):
        assert f"'{op}'" in ops
