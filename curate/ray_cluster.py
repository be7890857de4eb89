"""Running a plan on Ray: one datatrove `RayPipelineExecutor` per phase, run in order like the local one."""

from __future__ import annotations


def ray_executor(plan, phase, logging_dir: str, depends):
    from datatrove.executor import RayPipelineExecutor

    cfg = plan.recipe.executor.ray
    return RayPipelineExecutor(
        phase.pipeline, tasks=phase.tasks, workers=plan.workers, logging_dir=logging_dir, depends=depends,
        cpus_per_task=phase.cpus_per_task or cfg.cpus_per_task,
        mem_per_cpu_gb=phase.mem_per_cpu_gb or cfg.mem_per_cpu_gb,
        gpus_per_task=cfg.gpus_per_task if phase.gpus else 0,
    )
