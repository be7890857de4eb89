"""Write confinement: everything a run writes stays inside its output folder (OUT).

Folder names under OUT come from stage ids and phase names; both must be plain names (letters,
digits, `_`, `-`; phases may add `.`), never `..` or a path, which `safe_name` enforces where ids are
made (`curate/recipe.py`) and where phase folders are named (`curate/plan.py`). Before a run starts,
`check_output_tree` refuses an OUT that holds a symbolic link leading outside it (a phase folder
linked elsewhere would make every write of that phase land there). OUT itself may be a link: it is
the folder the user named.
"""

from __future__ import annotations

import os
import re

from curate.errors import RunError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PHASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class UnsafeOutputError(RunError):
    """OUT holds a link that leads outside it; the message names the link and its target."""


def safe_name(name: str, what: str = "stage id", dotted: bool = False) -> str:
    """`name` if it is a plain folder name, else ValueError saying what is allowed."""
    pattern = _PHASE if dotted else _NAME
    if not isinstance(name, str) or not pattern.match(name) or ".." in name:
        allowed = "letters, digits, '_', '-' and '.'" if dotted else "letters, digits, '_' and '-'"
        raise ValueError(f"{what} {name!r} is not a plain name: use {allowed}, starting with a letter or '_' "
                         "(it becomes a folder name under the output folder)")
    return name


def inside(path: str, root: str) -> bool:
    """Whether `path` (links resolved) is `root` or below it (links resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_output_tree(out_dir: str) -> None:
    """Raise UnsafeOutputError if any symbolic link under `out_dir` resolves outside it."""
    if not os.path.isdir(out_dir):
        return
    for folder, dirs, files in os.walk(out_dir, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not inside(path, out_dir):
                raise UnsafeOutputError(
                    f"{path} is a symbolic link to {os.path.realpath(path)}, outside the output folder "
                    f"{out_dir}; curate writes only inside its output folder: remove the link or choose "
                    "another output folder"
                )
