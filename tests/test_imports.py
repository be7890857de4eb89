"""The package structure: every module imports on its own, and `curate/` has no import cycle.

The cycle check reads the source with `ast`, so it sees imports inside functions too (a cycle hidden
in a function still couples the modules, and breaks the first time that function runs in a fresh
process that imported the other module first).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What `stages/` may import from the framework: the contracts on its ground floor, never the runner,
# the executors, the CLI or the report's rendering.
STAGE_CONTRACTS = {"curate", "curate.atomic", "curate.documents", "curate.errors", "curate.figures", "curate.paths",
                   "curate.plan", "curate.registry"}


def modules_of(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules among `known` that `path` imports anywhere (top level, functions, TYPE_CHECKING blocks).

    `from curate import x` counts as importing `curate.x` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & known


def import_graph(package: str) -> dict[str, set[str]]:
    modules = set(modules_of(package))
    graph = {}
    for name in modules:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = imported_modules(path, modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_curate_has_no_import_cycle():
    graph = import_graph("curate")
    assert {"curate.runner", "curate.record", "curate.plan"} <= set(graph)  # the graph is really read
    assert "curate.errors" in graph["curate.runner"]
    assert cycles(graph) == [], "import cycles in curate/ (each list imports itself through the others)"


def test_stages_import_only_the_framework_contracts():
    known = set(modules_of("curate"))
    offenders = {}
    for name in modules_of("stages"):
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        bad = imported_modules(path, known) - STAGE_CONTRACTS
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """Each module of curate/ and stages/ is imported first, with no other module of ours loaded
    before it, so a module that works only when another one was imported first is caught."""
    modules = modules_of("curate") + modules_of("stages")
    script = (
        "import importlib, sys, traceback\n"
        f"failed = []\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('curate', 'stages')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=-3))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    assert len(modules) > 60
