"""The errors curate raises to its users, on the ground floor: every other module may import them.

Each message says what went wrong and what to do; the CLI prints it on one line and exits with 2 for a
recipe or usage problem (nothing was written) and 1 for a run that failed.
"""

from __future__ import annotations


class RecipeError(Exception):
    """A recipe problem, located by file, key path and (when known) line."""

    def __init__(self, file: str, path: str, message: str, line: int | None = None):
        self.file, self.path, self.message, self.line = file, path, message, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


class RunError(Exception):
    """A run that cannot start or did not finish; the message says what to do."""


class ReportError(Exception):
    """A folder `curate report` cannot read (no run.json: not a curate output folder)."""


class MissingStageError(ValueError):
    """A stage needs the output of an earlier stage that the recipe does not have before it
    (`pack` without `order`, `order` without `neighbors`); the message names both."""
