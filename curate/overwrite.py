"""What `--overwrite` may delete: only the phase folders curate itself wrote inside the output folder.

An earlier run's `OUT/run.json` lists its phases; `--overwrite` removes them to start again. That file
is data on disk (anyone may have edited it, or planted it), so each entry is checked before anything is
removed: the id must be a plain phase name (`curate/paths.py`: no `..`, no separator, not absolute), the
folder must be a real directory directly inside OUT (a symbolic link is never followed or removed), and
its resolved path must still be inside OUT. An entry that fails a check is left alone and reported; the
run then goes on (a link leading outside is refused later by `check_output_tree`).
"""

from __future__ import annotations

import json
import os
import shutil

from curate.paths import inside, safe_name

# the files a run writes at the top of OUT besides its phase folders
RUN_FILES = ("run.json", "report.html")


def phase_folder_to_remove(out_dir: str, phase_id) -> tuple[str | None, str]:
    """(path, "") when `phase_id` names a folder curate may delete, else (None, why not)."""
    try:
        safe_name(phase_id, "phase id", dotted=True)
    except ValueError as e:
        return None, str(e)
    path = os.path.join(out_dir, phase_id)
    if os.path.islink(path):
        return None, f"{path} is a symbolic link, not a folder curate wrote"
    if not os.path.isdir(path):
        return None, ""  # nothing there (a phase that never ran): nothing to do, nothing to report
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(out_dir) or not inside(path, out_dir):
        return None, f"{path} resolves outside the output folder"
    return path, ""


def read_run_json(out_dir: str) -> dict:
    """OUT/run.json as a plain mapping ({} when missing or not a JSON object)."""
    try:
        with open(os.path.join(out_dir, "run.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def remove_previous_run(out_dir: str, previous: dict) -> list[str]:
    """Delete the phase folders and run files of the run described by `previous` (its run.json).

    Returns one line per entry that was refused (the caller shows them); never deletes outside OUT.
    """
    refused: list[str] = []
    phases = previous.get("phases") if isinstance(previous, dict) else None
    for entry in phases if isinstance(phases, list) else []:
        phase_id = entry.get("id") if isinstance(entry, dict) else entry
        path, why = phase_folder_to_remove(out_dir, phase_id)
        if path is not None:
            # rmtree never follows links inside the folder: a link in there is removed, not its target
            shutil.rmtree(path, ignore_errors=True)
        elif why:
            refused.append(f"not deleted: {why}")
    for name in RUN_FILES:
        path = os.path.join(out_dir, name)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)  # a link is removed itself; its target is untouched
    return refused
