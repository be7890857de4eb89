"""Python entry points: run a recipe from code (tests, notebooks, other tools)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from curate.documents import read_documents  # noqa: F401 (part of this API: the documents of a run)
from curate.recipe import Recipe, load_recipe
from curate.record import RunRecord
from curate.runner import RunPlan, execute, plan_run


@dataclass
class RunResult:
    output_dir: str
    plan: RunPlan
    run: RunRecord

    @property
    def record(self) -> dict:
        """The run record as written to OUT/run.json."""
        return self.run.to_dict()

    @property
    def final_documents(self) -> str | None:
        return self.plan.final_documents


def run_recipe(
    recipe: str | os.PathLike | dict | Recipe,
    overrides: list[str] | tuple[str, ...] = (),
    output: str | os.PathLike | None = None,
    tasks: int | None = None,
    workers: int | None = None,
    executor: str | None = None,
    overwrite: bool = False,
    console=None,
) -> RunResult:
    """Load (unless given a Recipe), plan and run a recipe; returns where everything went."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe if isinstance(recipe, dict) else Path(recipe), overrides)
    plan = plan_run(recipe, str(output) if output else None, tasks, workers)
    record = execute(plan, executor or recipe.executor.kind, console=console, overwrite=overwrite)
    return RunResult(plan.output_dir, plan, record)
