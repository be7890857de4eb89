"""Running a plan on Slurm: one datatrove `SlurmPipelineExecutor` per phase, chained with dependencies.

How datatrove 0.10's Slurm executor behaves, and what curate does about it:

- `run()` on the last phase submits the whole chain: each phase's executor first submits the phase
  it depends on, then pickles itself (with dill) to `OUT/<phase>/executor.pik`, writes
  `launch_script.slurm` and submits it as one job array (one element per incomplete rank) with
  `--dependency=afterok:<previous job>`; each element runs `srun launch_pickled_pipeline ...`. A
  phase whose ranks are all complete is not submitted, so rerunning the same command resumes.
  Each phase also gets a one-task `merge_stats` job (`OUT/<phase>/stats.json`).
- Tasks need the Python that has curate: unless the recipe sets `env_command` or `venv_path`, the
  job script activates the virtual environment (or the interpreter's bin folder) curate was
  launched from, so submitting from a login node gives working jobs.
- A failed element leaves its afterok dependants pending forever on a stock cluster, so every job is
  submitted with `--kill-on-invalid-dep=yes` (Slurm then cancels them). With
  `executor.slurm.wait: true`, curate follows the chain phase by phase, cancels what is left at
  the first phase that ends with incomplete ranks, and raises a `RunError` naming the phase, the
  ranks and where their logs are. `wait_for_run(OUT)` does the same later for a run submitted
  without waiting. Job ids go to `OUT/run.json` (`curate/record.py`) and `OUT/slurm_jobs.json`; rerunning while jobs of
  an earlier submission are still queued follows those jobs instead of submitting twice.
- datatrove writes a bare `#SBATCH --partition` when none is set and rounds memory to whole GB;
  `CurateSlurmExecutor` leaves an empty partition/QOS out (the cluster default applies) and asks
  memory in MB.

Tasks read and write OUT directly, so OUT must be on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time

from datatrove.executor import SlurmPipelineExecutor
from datatrove.executor.slurm import launch_slurm_job
from rich.console import Console

from curate.atomic import write_json_atomic
from curate.errors import RunError
from curate.plan import PlannedPhase, RunPlan
from curate.progress import PhaseMonitor
from curate.record import RunRecord

ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                 "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD"}


class CurateSlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor with memory in MB, empty partition/QOS left to the cluster's
    defaults, and the merge-stats job id kept so a waiting run can follow it."""

    def __init__(self, *args, mem_per_cpu_mb: int = 2048, phase_id: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.mem_per_cpu_mb = mem_per_cpu_mb
        self.phase_id = phase_id
        self.stats_job_id: str | None = None

    def get_sbatch_args(self, max_array: int = 1) -> dict:
        args = super().get_sbatch_args(max_array)
        args["mem-per-cpu"] = f"{self.mem_per_cpu_mb}M"
        for key in ("partition", "qos"):
            if not args.get(key):
                args.pop(key, None)
        return args

    def launch_merge_stats(self):
        # datatrove's job, keeping its id, and without the phase's GPUs (it only merges json files)
        args = {**self.get_sbatch_args(), "cpus-per-task": 1, "mem-per-cpu": "1G", "array": "0-0",
                "dependency": f"afterok:{self.job_id}"}
        args.pop("gpus", None)
        self.stats_job_id = launch_slurm_job(
            self.get_launch_file_contents(
                args,
                f"merge_stats {self.logging_dir.resolve_paths('stats')} "
                f"-o {self.logging_dir.resolve_paths('stats.json')}",
            ),
            self.job_id_retriever,
        )


def default_env_command() -> str:
    """Shell line that puts this interpreter's environment first in a task's PATH."""
    activate = os.path.join(sys.prefix, "bin", "activate")
    if sys.prefix != sys.base_prefix and os.path.isfile(activate):
        return f"source {shlex.quote(activate)}"
    return f"export PATH={shlex.quote(os.path.dirname(os.path.abspath(sys.executable)))}:$PATH"


def env_command_for(cfg) -> str:
    if cfg.env_command:
        return cfg.env_command
    if cfg.venv_path:  # a venv folder or its activate script
        path = os.path.abspath(os.path.expanduser(cfg.venv_path))
        if os.path.isdir(path):
            path = os.path.join(path, "bin", "activate")
        return f"source {shlex.quote(path)}"
    return default_env_command()


def slurm_executor(plan: RunPlan, phase: PlannedPhase, logging_dir: str, depends) -> CurateSlurmExecutor:
    """The executor of one phase: an array of `phase.tasks` elements after `depends`."""
    cfg = plan.recipe.executor.slurm
    cpus = phase.cpus_per_task or cfg.cpus_per_task
    mem_gb = phase.mem_per_cpu_gb or cfg.mem_per_cpu_gb
    gpus = (cfg.gpus_per_task or phase.gpus) if phase.gpus else 0
    sbatch_args = {"kill-on-invalid-dep": "yes", **(cfg.sbatch_args or {})}
    return CurateSlurmExecutor(
        phase.pipeline, tasks=phase.tasks, time=cfg.time, partition=cfg.partition, cpus_per_task=cpus,
        mem_per_cpu_gb=max(1, math.ceil(mem_gb)), mem_per_cpu_mb=max(1, math.ceil(mem_gb * 1024)),
        gpus_per_task=gpus, qos=cfg.qos, job_name=f"{cfg.job_name}-{phase.id}",
        env_command=env_command_for(cfg), sbatch_args=sbatch_args, logging_dir=logging_dir, depends=depends,
        phase_id=phase.id,
    )


def submit_chain(plan: RunPlan, executors: list, record: RunRecord, console) -> RunRecord:
    """Submit every phase (the last executor submits its dependencies first) and print the job ids;
    with `executor.slurm.wait` follow the jobs until the last phase ends. When jobs of an earlier
    submission into the same folder are still queued or running (say, the user pressed Ctrl-C
    while waiting), nothing is submitted again: those jobs are followed instead."""
    jobs_path = os.path.join(plan.output_dir, "slurm_jobs.json")
    earlier = previous_jobs(jobs_path)
    if any(active_elements(j) for pair in earlier.values() for j in pair if j):
        console.print("jobs of an earlier submission into this folder are still queued or running: following them")
        for entry in record.phases:
            entry.slurm_job, entry.slurm_stats_job = earlier.get(entry.id, [None, None])
    else:
        try:
            executors[-1].run()
        except (OSError, subprocess.CalledProcessError) as e:
            submitted = [str(j) for ex in executors for j in (ex.job_id, ex.stats_job_id) if j not in (None, -1)]
            cancel(submitted)
            raise RunError(f"sbatch failed ({e}); is this a Slurm login node (`sinfo` works)? "
                           f"Jobs submitted before the failure were cancelled: {submitted or 'none'}") from e
        for entry, ex in zip(record.phases, executors):
            entry.slurm_job = None if ex.job_id in (None, -1) else str(ex.job_id)
            entry.slurm_stats_job = ex.stats_job_id
        write_json_atomic({p.id: [p.slurm_job, p.slurm_stats_job] for p in record.phases}, jobs_path)
    for entry in record.phases:
        entry.status = "submitted" if entry.slurm_job else "done"
    record.status = "submitted"
    record.save()
    for i, entry in enumerate(record.phases):
        job = f"job {entry.slurm_job}" if entry.slurm_job else "already complete"
        console.print(f"[{i + 1}/{len(record.phases)}] {entry.label}: {job}")
    if plan.recipe.executor.slurm.wait:
        follow_jobs(record, console)
    return record


def wait_for_run(output_dir: str, console=None, poll_s: float = 2.0) -> RunRecord:
    """Wait for the Slurm jobs a submitted run (OUT/run.json) is made of; raises `RunError` at the
    first phase that ends with incomplete ranks, after cancelling every later job."""
    return follow_jobs(RunRecord.load(output_dir), console or Console(stderr=True), poll_s)


def follow_jobs(record: RunRecord, console, poll_s: float = 2.0) -> RunRecord:
    """Follow the submitted phases in order, updating OUT/run.json as each one ends."""
    phases = record.phases
    all_jobs = [j for p in phases for j in (p.slurm_job, p.slurm_stats_job) if j]
    for i, entry in enumerate(phases):
        job = entry.slurm_job
        if not job:
            continue
        phase_dir = record.phase_dir(entry)
        t0 = time.monotonic()
        label = f"[{i + 1}/{len(phases)}] {entry.label}"
        with PhaseMonitor(console, label, phase_dir, entry.tasks) as monitor:
            while active_elements(job):
                time.sleep(poll_s)
        entry.wall_s += time.monotonic() - t0
        if not console.is_terminal:
            done, docs, _ = monitor.final()
            console.print(f"{label}: {done}/{entry.tasks} tasks, {docs:,} docs, {time.monotonic() - t0:.1f}s")
        failed = record.incomplete_ranks(entry)
        if failed:
            cancel(all_jobs)
            entry.status = "failed"
            for later in phases[i + 1:]:
                if later.slurm_job:
                    later.status = "cancelled"
            record.status = "failed"
            record.save()
            raise RunError(
                f"phase '{entry.id}' (Slurm job {job}) ended with incomplete ranks {failed[:10]}"
                f"{' ...' if len(failed) > 10 else ''} ({describe_elements(job, phase_dir, failed[:10])}); the jobs of later phases were "
                f"cancelled. Task logs in {os.path.join(phase_dir, 'logs')}, Slurm output in "
                f"{os.path.join(phase_dir, 'slurm_logs')}. Rerun the same command to resume."
            )
        entry.status = "done"
        record.save()
    # the merge-stats jobs (stats.json per phase) are quick; do not return while they still write
    stats_jobs = [p.slurm_stats_job for p in phases if p.slurm_stats_job]
    deadline = time.monotonic() + 120
    while any(active_elements(j) for j in stats_jobs) and time.monotonic() < deadline:
        time.sleep(poll_s)
    record.status = "done"
    record.save()
    return record


def previous_jobs(jobs_path: str) -> dict[str, list]:
    """{phase id: [job id, merge-stats job id]} an earlier submission into the same folder recorded."""
    try:
        with open(jobs_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _squeue(*args: str) -> list[str]:
    try:
        out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def active_elements(job_id: str) -> list[str]:
    """Array elements of `job_id` still pending or running. An unknown (purged) job has none."""
    return [line for line in _squeue("-r", "-t", "all", "-j", job_id, "-o", "%T") if line.strip() in ACTIVE_STATES]


def describe_elements(job_id: str, phase_dir: str, ranks: list[int]) -> str:
    """'rank 1: array element 132_1 CANCELLED' for each failed rank (array index i ran rank
    ranks_to_run.json[i]); elements cancelled while pending are no longer listed by squeue."""
    try:
        with open(os.path.join(phase_dir, "ranks_to_run.json")) as f:
            index_of = {rank: i for i, rank in enumerate(json.load(f))}
    except (OSError, ValueError):
        index_of = {}
    states = {}
    for line in _squeue("-r", "-t", "all", "-j", job_id, "-o", "%K|%T|%r"):
        idx, state, reason = (line.split("|") + ["", ""])[:3]
        states[idx] = state + (f" {reason}" if reason and reason != "None" else "")
    parts = []
    for rank in ranks:
        idx = str(index_of.get(rank, "?"))
        parts.append(f"rank {rank}: array element {job_id}_{idx} {states.get(idx, 'not listed by squeue (cancelled before it started, or purged)')}")
    return "; ".join(parts)


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)
