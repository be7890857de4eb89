"""Run one dedup stage's plan on a folder of documents with datatrove's LocalPipelineExecutor.

Used by the tests and benchmarks of this family so they exercise the real phases (sharded reader,
executors, completion markers) without depending on the recipe runner. The runner does the same
thing for whole recipes.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable

from curate.plan import GlobalPlan, StageContext


def write_documents(docs: Iterable[dict], folder: str, shards: int = 1) -> str:
    """Write {"id", "text", ...} dicts as datatrove jsonl.gz shards (round-robin), return the folder."""
    import contextlib

    os.makedirs(folder, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(gzip.open(os.path.join(folder, f"{i:05d}.jsonl.gz"), "wt", encoding="utf-8"))
            for i in range(shards)
        ]
        for i, doc in enumerate(docs):
            files[i % shards].write(json.dumps(doc, ensure_ascii=False) + "\n")
    return folder


def read_documents(folder: str) -> list[dict]:
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl.gz"):
            with gzip.open(os.path.join(folder, name), "rt", encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f)
    return out


def stage_context(
    stage_id: str, output_dir: str, documents_dir: str, tasks: int = 1, seed: int = 0, **kw
) -> StageContext:
    return StageContext(
        stage_id=stage_id,
        output_dir=output_dir,
        phase_dir_for_documents=os.path.join(output_dir, "apply"),
        tasks=tasks,
        workers=1,
        seed=seed,
        documents_dir=documents_dir,
        **kw,
    )


def run_plan(plan: GlobalPlan | list, ctx: StageContext, workers: int = 1, on_phase=None) -> list[dict]:
    """Run every phase, then the apply steps (or a document stage's steps); return the output documents.

    on_phase(name, seconds) is called after each phase (used by the scale benchmark).
    """
    import time

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    def reader(folder):
        return JsonlReader(folder, glob_pattern="*.jsonl.gz", compression="gzip")

    phases = plan.phases if isinstance(plan, GlobalPlan) else []
    apply = plan.apply if isinstance(plan, GlobalPlan) else list(plan)
    for phase in phases:
        start = time.perf_counter()
        steps = ([reader(ctx.documents_dir)] if phase.reads_documents else []) + list(phase.pipeline)
        LocalPipelineExecutor(
            steps,
            tasks=phase.tasks or ctx.tasks,
            workers=workers,
            logging_dir=os.path.join(ctx.phase_dir(phase.name), "logs"),
            skip_completed=True,
        ).run()
        if on_phase:
            on_phase(phase.name, time.perf_counter() - start)
    if isinstance(plan, GlobalPlan) and plan.documents:
        return read_documents(plan.documents)
    out_dir = os.path.join(ctx.phase_dir_for_documents, "documents")
    start = time.perf_counter()
    LocalPipelineExecutor(
        [reader(ctx.documents_dir), *apply, JsonlWriter(out_dir, output_filename="${rank}.jsonl.gz")],
        tasks=ctx.tasks,
        workers=workers,
        logging_dir=os.path.join(ctx.phase_dir_for_documents, "logs"),
        skip_completed=True,
    ).run()
    if on_phase:
        on_phase("apply", time.perf_counter() - start)
    return read_documents(out_dir)


def phase_stats(ctx: StageContext, phase: str) -> dict:
    """datatrove's merged stats of one phase ('apply' for the document pass), as {stat name: total}."""
    folder = ctx.phase_dir_for_documents if phase == "apply" else ctx.phase_dir(phase)
    with open(os.path.join(folder, "logs", "stats.json")) as f:
        stats = json.load(f)
    flat = {}
    for step in stats:
        for key, value in step.get("stats", {}).items():
            flat[f"{step['name']}/{key}"] = value.get("total", value) if isinstance(value, dict) else value
    return flat
