"""Running a plan on Ray: one datatrove `RayPipelineExecutor` per phase, run in order by this process.

How datatrove 0.10's Ray executor behaves, and what curate does about it:

- `run()` blocks until every task of the phase has ended; it skips ranks that have a completion
  marker (so a rerun resumes), and resubmits a task up to 3 times when Ray itself lost it (worker
  or node died). A task that *raised* is not retried, and `run()` still returns normally, only
  logging "Only n/m tasks completed". `CurateRayExecutor.run` turns that into an exception, which the
  runner reports as a `RunError` naming the phase, the failed ranks and the log folder.
- With `depends=`, `run()` first runs the dependency if it was not launched in this process, then
  polls it every 2 minutes until complete - forever, if one of its tasks failed; it also pickles
  the whole chain of earlier phases into every task. The runner already runs phases one after
  another and stops at the first failure, so curate leaves `depends` unset on Ray.
- Each task is a Ray actor with `num_cpus=cpus_per_task`, `num_gpus=gpus_per_task` and
  `memory=mem_per_cpu_gb * cpus_per_task` GiB, placed through a placement group; at most `workers`
  tasks are submitted at once. A request no node can ever satisfy would wait forever, so it is
  refused up front.
- It expects `ray.init` to have been called: `ray_session` connects to `executor.ray.address`, else
  to `RAY_ADDRESS`, else to a cluster started on this machine with `ray start`, else starts a
  local Ray for the run.

Tasks read and write OUT directly, so on a multi-node cluster OUT must be on a filesystem every node
mounts at the same path, and every node needs curate installed (same version) in its Python.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from datatrove.executor import RayPipelineExecutor
from loguru import logger

from curate.errors import RunError
from curate.executors import console_level
from curate.plan import PlannedPhase, RunPlan
from curate.record import incomplete_ranks

GIB = 1024**3


class CurateRayExecutor(RayPipelineExecutor):
    """datatrove's Ray executor that fails loudly when a task failed, and never waits on a placement
    group no node of the cluster can hold."""

    def __init__(self, *args, phase_id: str = "", **kwargs):
        # datatrove warns on every executor that a local path must be a shared filesystem; the
        # module docstring (and the README) say it once
        logger.disable("datatrove.executor.ray")
        try:
            super().__init__(*args, **kwargs)
        finally:
            logger.enable("datatrove.executor.ray")
        self.phase_id = phase_id

    def incomplete(self) -> list[int]:
        return incomplete_ranks(self.logging_dir.path, self.world_size)

    def run(self):
        if self.incomplete():
            check_cluster_fits(self.phase_id, self.cpus_per_task, self.mem_per_cpu_gb * self.cpus_per_task,
                               self.gpus_per_task)
        super().run()
        failed = self.incomplete()
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {self.world_size} Ray tasks did not complete{first_error(self, failed)}"
            )


def ray_executor(plan: RunPlan, phase: PlannedPhase, logging_dir: str, depends=None) -> CurateRayExecutor:
    """The executor of one phase; `depends` is accepted for symmetry with Slurm and not passed on
    (see the module docstring)."""
    import ray  # noqa: F401 - fail here, where the runner turns a missing ray into "pip install 'curate[ray]'"

    cfg = plan.recipe.executor.ray
    gpus = (cfg.gpus_per_task or phase.gpus) if phase.gpus else 0
    # `executor.workers` unset: submit every task and let the cluster's free CPUs decide how many run
    # (the plan's default, this machine's CPU count, says nothing about the cluster)
    workers = phase.tasks if plan.workers_auto else min(plan.workers, phase.tasks)
    return CurateRayExecutor(
        phase.pipeline, tasks=phase.tasks, workers=workers, logging_dir=logging_dir,
        cpus_per_task=phase.cpus_per_task or cfg.cpus_per_task,
        mem_per_cpu_gb=phase.mem_per_cpu_gb or cfg.mem_per_cpu_gb,
        gpus_per_task=gpus, phase_id=phase.id,
    )


@contextmanager
def ray_session(cfg):
    """Connected to a Ray cluster for the duration of a run.

    A connection the caller already opened (`ray.init` in a notebook) is used as it is and left
    open. Task output reaches this terminal only with CURATE_LOG_LEVEL=INFO or DEBUG; otherwise it
    stays in OUT/<phase>/logs/.
    """
    import ray  # optional (the `ray` extra)

    if ray.is_initialized():
        yield
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, log_to_driver=console_level() in ("INFO", "DEBUG", "TRACE"),
                 include_dashboard=False if address is None else None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RunError(f"cannot connect to {where}: {e}. Check executor.ray.address (or RAY_ADDRESS) and that "
                       "`ray status` works from this machine.") from e
    try:
        yield
    finally:
        ray.shutdown()


def check_cluster_fits(phase_id: str, cpus: float, mem_gb: float, gpus: float) -> None:
    """Refuse a task shape that no alive node has room for (Ray would wait for it forever)."""
    import ray  # optional (the `ray` extra)

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for res in nodes:
        if (res.get("CPU", 0) >= cpus and res.get("memory", 0) >= mem_gb * GIB - 1
                and res.get("GPU", 0) >= gpus):
            return
    largest = ", ".join(
        f"{r.get('CPU', 0):g} CPU / {r.get('memory', 0) / GIB:.1f} GiB / {r.get('GPU', 0):g} GPU" for r in nodes
    ) or "no alive nodes"
    raise RuntimeError(
        f"phase '{phase_id}' asks {cpus:g} CPU, {mem_gb:g} GiB memory and {gpus:g} GPU per task, and no node of "
        f"the Ray cluster has that much ({largest}); lower executor.ray.cpus_per_task / mem_per_cpu_gb / "
        "gpus_per_task (or the stage's gpus) or add a bigger node"
    )


def first_error(executor: RayPipelineExecutor, ranks: list[int]) -> str:
    """The last error line in the log of the first failed rank, as ': <line> (rank n)'."""
    try:
        with executor.logging_dir.open(f"logs/task_{ranks[0]:05d}.log", "r") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return f": {errors[-1][-300:]} (rank {ranks[0]})" if errors else ""
