"""Run one stage over a folder of documents the way a recipe runs it: `plan_run` + `execute`.

The tests of a stage family use this to exercise the real phases (the runner's reader and writer,
datatrove's executors, completion markers, stats) on a small corpus, and then look at one phase's
data or stats.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console

from curate.documents import read_documents
from curate.plan import RunPlan
from curate.recipe import load_recipe
from curate.runner import execute, plan_run


def write_documents(docs: Iterable[dict], folder: str, shards: int = 1) -> str:
    """Write {"id", "text", ...} dicts as jsonl.gz shards (round-robin); returns the folder."""
    os.makedirs(folder, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(gzip.open(os.path.join(folder, f"{i:05d}.jsonl.gz"), "wt", encoding="utf-8"))
                 for i in range(shards)]
        for i, doc in enumerate(docs):
            files[i % shards].write(json.dumps(doc, ensure_ascii=False) + "\n")
    return folder


@dataclass
class StageRun:
    """A finished one-stage run: its output documents and where each phase wrote."""

    plan: RunPlan
    stage_id: str
    documents: list[dict]

    @property
    def output_dir(self) -> str:
        return self.plan.output_dir

    def phase_dir(self, phase: str) -> str:
        return os.path.join(self.output_dir, f"{self.stage_id}.{phase}")

    def data_dir(self, phase: str) -> str:
        return os.path.join(self.phase_dir(phase), "data")

    def stats(self, phase: str = "apply") -> dict:
        """datatrove's merged stats of one phase of the stage ('apply': the document pass that
        applies its decisions), as {"<step name>/<stat>": total}."""
        with open(os.path.join(self.phase_dir(phase), "stats.json")) as f:
            steps = json.load(f)
        return {f"{step['name']}/{key}": value.get("total", value) if isinstance(value, dict) else value
                for step in steps for key, value in step.get("stats", {}).items()}


def run_stage(name: str, settings: dict, documents_dir: str, output_dir: str, tasks: int = 1, seed: int = 0,
              workers: int = 1) -> StageRun:
    """Run stage `name` with `settings` over the jsonl.gz documents in `documents_dir`."""
    recipe = load_recipe({
        "name": f"{name}-test",
        "input": {"format": "jsonl", "paths": documents_dir},
        "output": output_dir,
        "executor": {"tasks": tasks, "workers": workers, "seed": seed},
        "stages": [{name: dict(settings)}],
    })
    plan = plan_run(recipe)
    execute(plan, console=Console(stderr=True, quiet=True))
    return StageRun(plan, recipe.stages[0].id, read_documents(plan.final_documents))
