"""The runner: cuts a recipe into phases and runs each phase as one datatrove executor.

Consecutive document stages fuse into one sharded *document pass* (reader -> steps -> writer of the
new document set). A global stage contributes its own phases, each depending on the previous one, and
its `apply` steps open the next document pass. Every phase writes under `OUT/<phase id>/`: datatrove's
`completions/`, `stats/`, `logs/`, plus its data; a rerun skips completed tasks.

`OUT/run.json` (`curate/record.py`) records the plan (phase ids, tasks, stage settings) and each
phase's wall time; a rerun with a different plan in the same folder is refused instead of mixing two
runs' outputs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any

from rich.console import Console

from curate.documents import DocumentsWriter, documents_reader
from curate.errors import RunError
from curate.executors import QuietLocalExecutor, quiet_datatrove_logs
from curate.inputs import count_input_files, input_reader, prepare_input
from curate.plan import DOCUMENTS_SUBDIR, GlobalPlan, PlannedPhase, RunPlan, StageContext
from curate.progress import PhaseMonitor, ProgressCounter
from curate.ray_cluster import ray_executor, ray_session
from curate.recipe import Recipe
from curate.record import RunRecord, fingerprint_hash
from curate.registry import get_stage
from curate.slurm_cluster import slurm_executor, submit_chain

__all__ = ["PlannedPhase", "RunError", "RunPlan", "build_executors", "execute", "plan_run"]


def plan_run(recipe: Recipe, output_dir: str | None = None, tasks: int | None = None, workers: int | None = None) -> RunPlan:
    """Build every phase's pipeline (nothing runs, nothing is written)."""
    out = os.path.abspath(output_dir or recipe.output.folder)
    tasks = tasks or recipe.executor.tasks
    workers = workers if workers and workers > 0 else recipe.executor.workers
    workers_auto = workers is None or workers <= 0
    if workers_auto:
        workers = min(tasks, os.cpu_count() or 1)
    plan = RunPlan(recipe, out, tasks, workers, workers_auto=workers_auto)

    current_docs: str | None = None  # None: the recipe's input
    pending: list[Any] = []
    pending_owner: list[str] = []  # stage id of each pending step
    pending_stages: list[str] = []
    pass_id: str | None = None
    upstream: list[tuple[str, str]] = []

    def reader_for(phase_dir: str):
        if current_docs is None:
            return input_reader(recipe.input, out, phase_dir)
        return documents_reader(current_docs)

    def flush(default_id: str) -> None:
        nonlocal current_docs, pending, pending_owner, pending_stages, pass_id
        pid = pass_id or default_id
        phase_dir = os.path.join(out, pid)
        docs_dir = os.path.join(phase_dir, DOCUMENTS_SUBDIR)
        n_files = count_input_files(recipe.input) if current_docs is None else None
        parts = tasks if n_files is not None and n_files < tasks else 1
        pipeline = [
            reader_for(phase_dir),
            ProgressCounter(os.path.join(phase_dir, "progress")),
            *pending,
            DocumentsWriter(docs_dir, parts=parts),
        ]
        label = " + ".join(pending_stages) if pending_stages else "read input"
        owners = ["read", "progress", *pending_owner, "write"]
        plan.phases.append(PlannedPhase(pid, label, "documents", list(pending_stages), pipeline, tasks, docs_dir,
                                        step_stages=owners))
        current_docs, pending, pending_owner, pending_stages, pass_id = docs_dir, [], [], [], None

    for stage in recipe.stages:
        spec = get_stage(stage.name)
        if spec.kind == "document":
            pass_id = pass_id or stage.id
            ctx = _context(recipe, stage.id, out, os.path.join(out, pass_id), tasks, workers, current_docs, upstream)
            steps = spec.build(stage.settings, ctx)
            pending.extend(steps)
            pending_owner.extend([stage.id] * len(steps))
            pending_stages.append(stage.id)
        else:
            if pending or current_docs is None:
                flush("input")
            apply_id = f"{stage.id}.apply"
            ctx = _context(recipe, stage.id, out, os.path.join(out, apply_id), tasks, workers, current_docs, upstream)
            gplan: GlobalPlan = spec.build(stage.settings, ctx)
            for ph in gplan.phases:
                pid = f"{stage.id}.{ph.name}"
                pipeline = list(ph.pipeline)
                owners = [stage.id] * len(pipeline)
                if ph.reads_documents:
                    pipeline = [documents_reader(current_docs), ProgressCounter(os.path.join(out, pid, "progress")), *pipeline]
                    owners = ["read", "progress", *owners]
                plan.phases.append(
                    PlannedPhase(pid, f"{stage.id}: {ph.name}", "global", [stage.id], pipeline, ph.tasks or tasks,
                                 gpus=ph.gpus, cpus_per_task=ph.cpus_per_task, mem_per_cpu_gb=ph.mem_per_cpu_gb,
                                 step_stages=owners)
                )
            if gplan.documents:
                current_docs = gplan.documents
                plan.phases[-1].documents_out = gplan.documents
            if gplan.apply:
                pending, pass_id = list(gplan.apply), apply_id
                pending_owner, pending_stages = [stage.id] * len(gplan.apply), [f"{stage.id} (apply)"]
        upstream.append((stage.id, stage.name))
    if pending or current_docs is None:
        flush("input")
    plan.final_documents = current_docs
    return plan


def _context(recipe, stage_id, out, pass_dir, tasks, workers, docs, upstream) -> StageContext:
    return StageContext(
        stage_id=stage_id,
        output_dir=out,
        phase_dir_for_documents=pass_dir,
        tasks=tasks,
        workers=workers,
        seed=recipe.executor.seed,
        keep_removed=recipe.output.keep_removed,
        documents_dir=docs,
        label_key=recipe.input.label_key,
        upstream=tuple(upstream),
    )


# ---------------------------------------------------------------------------------------------------
# executors


def build_executors(plan: RunPlan, kind: str) -> list:
    """One datatrove executor per phase, each depending on the previous one."""
    executors = []
    prev = None
    for phase in plan.phases:
        logging_dir = os.path.join(plan.output_dir, phase.id)
        if kind == "local":
            ex = QuietLocalExecutor(
                phase.pipeline, tasks=phase.tasks, workers=min(plan.workers, phase.tasks),
                logging_dir=logging_dir, depends=prev,
            )
        elif kind == "slurm":
            ex = slurm_executor(plan, phase, logging_dir, prev)
        elif kind == "ray":
            ex = ray_executor(plan, phase, logging_dir, prev)
        else:
            raise RunError(f"unknown executor '{kind}'; valid: local, slurm, ray")
        executors.append(ex)
        prev = ex
    return executors


# ---------------------------------------------------------------------------------------------------
# running


def check_output_folder(plan: RunPlan, overwrite: bool = False) -> RunRecord | None:
    """Refuse to mix runs: an existing run.json must describe the same plan (or --overwrite)."""
    if not RunRecord.exists(plan.output_dir):
        return None
    previous = RunRecord.load(plan.output_dir)
    if previous.fingerprint_hash == fingerprint_hash(plan.fingerprint()):
        return previous
    if not overwrite:
        raise RunError(
            f"{plan.output_dir} holds the output of a different recipe or settings (see its run.json); "
            "choose another output folder, or pass --overwrite to delete that run's phases and start again"
        )
    for ph in previous.phases:
        shutil.rmtree(previous.phase_dir(ph), ignore_errors=True)
    for name in (previous.path, os.path.join(plan.output_dir, "report.html")):
        if os.path.exists(name):
            os.remove(name)
    return None


def execute(plan: RunPlan, kind: str = "local", console=None, overwrite: bool = False) -> RunRecord:
    """Run every phase in order; returns the run record (also written to OUT/run.json)."""
    console = console or Console(stderr=True)
    previous = check_output_folder(plan, overwrite)
    try:
        os.makedirs(plan.output_dir, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the output folder {plan.output_dir}: {e.strerror or e}") from e
    prepare_input(plan.recipe.input, plan.output_dir)
    quiet_datatrove_logs()
    record = RunRecord.for_plan(plan, kind)
    if previous:  # keep the time already spent by earlier (interrupted) runs
        record.resume(previous)
    record.save()

    try:
        executors = build_executors(plan, kind)
    except ImportError as e:
        hint = {"ray": "pip install 'curate[ray]'", "slurm": "run on a Slurm login node"}.get(kind, "")
        raise RunError(f"cannot use executor '{kind}': {e}. {hint}") from e
    if kind == "slurm":
        return submit_chain(plan, executors, record, console)

    session = contextlib.nullcontext()
    if kind == "ray":  # phases run one after another as on the local executor, on a Ray cluster
        session = ray_session(plan.recipe.executor.ray)
    with session:
        for i, (phase, ex, entry) in enumerate(zip(plan.phases, executors, record.phases)):
            phase_dir = record.phase_dir(entry)
            label = f"[{i + 1}/{len(plan.phases)}] {phase.label}"
            t0 = time.monotonic()
            if entry.status == "done" and not record.incomplete_ranks(entry):
                console.print(f"{label}: already complete, skipped")
                continue
            with PhaseMonitor(console, label, phase_dir, phase.tasks) as mon:
                try:
                    ex.run()
                except Exception as e:  # noqa: BLE001 - reported with where to look, then re-raised as RunError
                    entry.status = "failed"
                    entry.wall_s += time.monotonic() - t0
                    try:
                        record.save()
                    except RunError:  # a full disk: the phase's own error (below) is the one to show
                        pass
                    failed = record.incomplete_ranks(entry)
                    logs = os.path.join(phase_dir, "logs")
                    raise RunError(
                        f"phase '{phase.id}' failed ({type(e).__name__}: {e}); incomplete tasks {failed[:10]}; "
                        f"task logs in {logs}. Rerun the same command to resume."
                    ) from e
            entry.wall_s += time.monotonic() - t0
            entry.status = "done"
            done, docs, _ = mon.final()
            if not console.is_terminal:
                console.print(f"{label}: {done}/{phase.tasks} tasks, {docs:,} docs, {entry.wall_s:.1f}s")
            record.save()
    record.status = "done"
    record.save()
    return record
