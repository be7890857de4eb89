"""Fail fast, with one line, when a script starts parallel work without `if __name__ == "__main__":`.

datatrove's local executor starts its worker processes with `forkserver`: each worker imports the
user's script again (as `__mp_main__`) to find what the pipeline refers to. A script that starts an
executor (or `curate.api.run_recipe`) at module level then starts it again in every worker, where
multiprocessing refuses, the worker dies, the pool starts another: the run loops forever and prints
tracebacks. Python's fix is the guard; these checks name the line that needs it:

- `check_script_guard()` (when `curate` is first imported, by the script itself or through `stages`):
  reads the script and finds a `LocalPipelineExecutor(...).run()` or `run_recipe(...)` called at
  module level outside the guard, where the executor would start processes (not `workers=1`,
  `tasks=1` or `start_method="fork"`), whatever the pipeline holds.
- `check_caller_guard()` (when curate's runner is about to start processes): the same for the line
  of the script that called it, also through functions the script calls at module level.
Only the main process checks: the workers re-importing the script must not.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys

GUARD = 'if __name__ == "__main__":'
_RUNNERS = {"run_recipe"}


def _message(path: str, line: int) -> str:
    return (f"{path}:{line} starts parallel work at module level, outside `{GUARD}`: the worker "
            "processes re-import this script and would start it again, forever; put that code under the guard")


def _in_main_process() -> bool:
    if multiprocessing.current_process().name != "MainProcess":
        return False
    mp = sys.modules.get("multiprocess")  # datatrove's pools come from `multiprocess` (dill's fork)
    return mp is None or mp.current_process().name == "MainProcess"


def _main_script() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return None  # an interactive session, `python -c`, a notebook: nothing is re-imported
    return path


def _is_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return "__name__" in names and "__main__" in consts


def _module_level(tree: ast.Module):
    """Statements that run when the module is imported: not the guard's body, not function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        if _is_guard(node):
            stack[:0] = node.orelse
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
            stack[:0] = [n for field in ("body", "orelse", "finalbody") for n in getattr(node, field, [])]
            stack[:0] = [n for h in getattr(node, "handlers", []) for n in h.body]
        yield node


def _literal(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _starts_processes(call: ast.Call) -> bool:
    """Whether a `LocalPipelineExecutor(...)` call builds an executor that would start a pool."""
    if _literal(call, "start_method") == "fork":
        return False
    workers, tasks = _literal(call, "workers"), _literal(call, "tasks")
    return workers != 1 and not (tasks == 1 and workers is None)


def _callee(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _starts_in(statements, executors: set[str], starters: set[str]) -> list[int]:
    """Lines among `statements` that start a process-pool executor or a recipe run, directly or by
    calling one of `starters` (functions of the script that do); `executors` collects names bound to
    such executors along the way."""
    lines = []
    for stmt in statements:
        for node in ast.walk(stmt):
            if not isinstance(node, ast.Call):
                continue
            name = _callee(node)
            if name in _RUNNERS or (isinstance(node.func, ast.Name) and name in starters):
                lines.append(node.lineno)
            elif name == "run" and isinstance(node.func, ast.Attribute):
                target = node.func.value
                if isinstance(target, ast.Call) and (_callee(target) or "").endswith("LocalPipelineExecutor"):
                    if _starts_processes(target):
                        lines.append(node.lineno)
                elif isinstance(target, ast.Name) and target.id in executors:
                    lines.append(node.lineno)
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                if (_callee(node.value) or "").endswith("LocalPipelineExecutor") and _starts_processes(node.value):
                    executors.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return lines


def unguarded_starts(source: str) -> list[int]:
    """Lines of module-level code (outside the main guard) that start a process-pool executor or a
    recipe run, also through a function of the script called there (`main()` without the guard)."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    starters: set[str] = set()
    changed = True
    while changed:  # functions that start work, also through other functions of the script
        changed = False
        for name, fn in functions.items():
            if name not in starters and _starts_in(fn.body, set(), starters):
                starters.add(name)
                changed = True
    return sorted(set(_starts_in(list(_module_level(tree)), set(), starters)))


def check_script_guard() -> None:
    """Exit with one line naming the first unguarded start in the running script (see module doc)."""
    path = _main_script()
    if path is None or not _in_main_process():
        return
    try:
        with open(path, encoding="utf-8") as f:
            lines = unguarded_starts(f.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    if lines:
        raise SystemExit(f"curate: {_message(path, lines[0])}")


def check_caller_guard() -> None:
    """Exit with one line if the running script called us from module level outside the guard."""
    path = _main_script()
    if path is None or not _in_main_process():
        return
    frame = sys._getframe(1)
    outer = None
    while frame is not None:  # the script's own module-level frame, however deep the call
        if frame.f_code.co_name == "<module>" and os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path):
            outer = frame
        frame = frame.f_back
    if outer is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    line = outer.f_lineno
    guarded = any(_is_guard(n) and n.body[0].lineno <= line <= n.body[-1].end_lineno for n in tree.body)
    if not guarded:
        raise SystemExit(f"curate: {_message(path, line)}")
