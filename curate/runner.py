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
import sys
import time
from typing import Any

from rich.console import Console

from curate.documents import DOCUMENTS_SUBDIR, DocumentsWriter, documents_reader
from curate.empty_corpus import empty_upstream, stop_early
from curate.errors import RecipeError, RunError
from curate.executors import QuietLocalExecutor, quiet_datatrove_logs
from curate.final import FINAL_DIR, publish_final
from curate.inputs import input_bytes, input_reader, prepare_input
from curate.mainguard import check_caller_guard
from curate.output_lock import OutputLockedError, output_lock
from curate.overwrite import read_run_json, remove_previous_run
from curate.plan import GlobalPlan, PlannedPhase, RunPlan, StageContext
from curate.progress import PhaseMonitor, ProgressCounter
from curate.ray_cluster import ray_executor, ray_session
from curate.recipe import Recipe
from curate.record import RunRecord, fingerprint_hash
from curate.registry import get_stage
from curate.slurm_cluster import slurm_executor, submit_chain
from curate.warm_up import WarmUps

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
        # with fewer input files than tasks, the input readers spread each file over all the tasks
        # (jsonl and parquet record by record, curate/readers.py; WARC by byte span, curate/warc_spans.py)
        pipeline = [
            reader_for(phase_dir),
            ProgressCounter(os.path.join(phase_dir, "progress")),
            *pending,
            DocumentsWriter(docs_dir),
        ]
        label = " + ".join(pending_stages) if pending_stages else "read input"
        owners = ["read", "progress", *pending_owner, "write"]
        plan.phases.append(PlannedPhase(pid, label, "documents", list(pending_stages), pipeline, tasks, docs_dir,
                                        step_stages=owners))
        current_docs, pending, pending_owner, pending_stages, pass_id = docs_dir, [], [], [], None

    for index, stage in enumerate(recipe.stages):
        spec = get_stage(stage.name)
        if spec.kind == "document":
            pass_id = pass_id or stage.id
            ctx = _context(recipe, stage.id, out, os.path.join(out, pass_id), tasks, workers, current_docs, upstream)
            steps = _build(spec, stage, ctx, recipe, index)
            pending.extend(steps)
            pending_owner.extend([stage.id] * len(steps))
            pending_stages.append(stage.id)
        else:
            if pending or current_docs is None:
                flush("input")
            apply_id = f"{stage.id}.apply"
            ctx = _context(recipe, stage.id, out, os.path.join(out, apply_id), tasks, workers, current_docs, upstream)
            gplan: GlobalPlan = _build(spec, stage, ctx, recipe, index)
            for ph in gplan.phases:
                pid = f"{stage.id}.{ph.name}"
                pipeline = list(ph.pipeline)
                owners = [stage.id] * len(pipeline)
                if ph.reads_documents:
                    if ph.counts_progress:  # a step of the phase reports what it has done itself
                        pipeline, owners = [documents_reader(current_docs), *pipeline], ["read", *owners]
                    else:
                        pipeline = [documents_reader(current_docs), ProgressCounter(os.path.join(out, pid, "progress")),
                                    *pipeline]
                        owners = ["read", "progress", *owners]
                plan.phases.append(
                    PlannedPhase(pid, f"{stage.id}: {ph.name}", "global", [stage.id], pipeline, ph.tasks or tasks,
                                 gpus=ph.gpus, cpus_per_task=ph.cpus_per_task, mem_per_cpu_gb=ph.mem_per_cpu_gb,
                                 step_stages=owners)
                )
            plan.final_outputs.update(gplan.outputs)
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


def _build(spec, stage, ctx: StageContext, recipe: Recipe, index: int):
    """A stage's builder; a setting it refuses (ValueError) is a recipe problem, reported as one."""
    try:
        return spec.build(stage.settings, ctx)
    except ValueError as e:
        raise RecipeError(recipe.source, f"stages[{index}].{stage.name}", str(e)) from None


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


def build_executors(plan: RunPlan, kind: str, in_process: bool = False) -> list:
    """One datatrove executor per phase, each depending on the previous one. `in_process` (local):
    every task runs in this process, one after another (see `runs_in_process`)."""
    executors = []
    prev = None
    for phase in plan.phases:
        logging_dir = os.path.join(plan.output_dir, phase.id)
        if kind == "local":
            ex = QuietLocalExecutor(
                phase.pipeline, tasks=phase.tasks, workers=1 if in_process else min(plan.workers, phase.tasks),
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


def runs_in_process(plan: RunPlan, kind: str) -> bool:
    """Whether a local run's input is small enough (`executor.in_process_mb`) that starting worker
    processes for every phase (seconds each: interpreter, datatrove, torch, the stage's models) would
    cost more than the tasks themselves; its tasks then run in this process, one after another.
    Outputs do not depend on it: each task gets its own copy of the pipeline either way."""
    limit = plan.recipe.executor.in_process_mb
    if kind != "local" or limit <= 0:
        return False
    size = input_bytes(plan.recipe.input, plan.output_dir)
    return size is not None and size < limit * 1e6


def check_output_folder(plan: RunPlan, overwrite: bool = False) -> RunRecord | None:
    """Refuse to mix runs: an existing run.json must describe the same plan (or --overwrite)."""
    if not RunRecord.exists(plan.output_dir):
        return None
    try:
        previous = RunRecord.load(plan.output_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        previous = None  # not a run.json this plan can resume; --overwrite deletes only what it can trust
    if previous is not None and previous.fingerprint_hash == fingerprint_hash(plan.fingerprint()):
        return previous
    if not overwrite:
        raise RunError(
            f"{plan.output_dir} holds the output of a different recipe or settings (see its run.json); "
            "choose another output folder, or pass --overwrite to delete that run's phases and start again"
        )
    # only phase folders curate wrote inside OUT, whatever run.json says (curate/overwrite.py)
    for line in remove_previous_run(plan.output_dir, read_run_json(plan.output_dir)):
        print(f"warning: --overwrite {line}", file=sys.stderr)
    shutil.rmtree(os.path.join(plan.output_dir, FINAL_DIR), ignore_errors=True)
    return None


def execute(plan: RunPlan, kind: str = "local", console=None, overwrite: bool = False) -> RunRecord:
    """Run every phase in order; returns the run record (also written to OUT/run.json).

    The output folder is locked for the whole call (curate/output_lock.py): a second run into it is
    refused while this one runs."""
    try:
        lock = output_lock(plan.output_dir)
        lock.__enter__()
    except OutputLockedError as e:
        raise RunError(str(e)) from None
    try:
        return _execute_locked(plan, kind, console, overwrite)
    finally:
        lock.__exit__(None, None, None)


def _execute_locked(plan: RunPlan, kind: str, console, overwrite: bool) -> RunRecord:
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

    in_process = runs_in_process(plan, kind)
    if in_process and any(min(plan.workers, p.tasks) > 1 for p in plan.phases):
        console.print(f"small input (under executor.in_process_mb = {plan.recipe.executor.in_process_mb:g} MB): "
                      "tasks run in this process, one after another", highlight=False)
    elif kind == "local" and any(min(plan.workers, p.tasks) > 1 for p in plan.phases):
        check_caller_guard()  # worker processes re-import a calling script: it needs the main guard
    try:
        executors = build_executors(plan, kind, in_process)
    except ImportError as e:
        hint = {"ray": "pip install 'curate[ray]'", "slurm": "run on a Slurm login node"}.get(kind, "")
        raise RunError(f"cannot use executor '{kind}': {e}. {hint}") from e
    if kind == "slurm":
        return submit_chain(plan, executors, record, console)

    session = contextlib.nullcontext()
    if kind == "ray":  # phases run one after another as on the local executor, on a Ray cluster
        session = ray_session(plan.recipe.executor.ray)
    # start-up work of later phases, done in the background of a small in-process run (curate/warm_up.py)
    warm_ups = WarmUps(plan.phases) if in_process else None
    with session:
        for i, (phase, ex, entry) in enumerate(zip(plan.phases, executors, record.phases)):
            if warm_ups is not None:
                warm_ups.phase_starts(i, needed=lambda j: record.phases[j].status != "done")
            phase_dir = record.phase_dir(entry)
            label = f"[{i + 1}/{len(plan.phases)}] {phase.label}"
            t0 = time.monotonic()
            if (empty_phase := empty_upstream(plan.phases, record.phases, i)) is not None:
                stop_early(plan, record, i, empty_phase, console)  # curate/empty_corpus.py
                break
            if entry.status == "done" and not record.incomplete_ranks(entry):
                console.print(f"{label}: already complete, skipped")
                continue
            with PhaseMonitor(console, label, phase_dir, phase.tasks) as mon:
                try:
                    ex.run()
                except KeyboardInterrupt as e:  # SIGINT/SIGTERM (curate/signals.py): say where, keep resumable
                    entry.status = "interrupted"
                    entry.wall_s += time.monotonic() - t0
                    with contextlib.suppress(RunError):
                        record.save()
                    if getattr(e, "phase", "") is None:
                        e.phase = phase.id
                    raise
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
    publish_final(plan.output_dir, plan.final_documents, plan.final_outputs)
    return record
