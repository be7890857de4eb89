"""Running a plan on Slurm: one datatrove `SlurmPipelineExecutor` per phase, chained with dependencies."""

from __future__ import annotations

from curate.atomic import write_json_atomic


def slurm_executor(plan, phase, logging_dir: str, depends):
    from datatrove.executor import SlurmPipelineExecutor

    cfg = plan.recipe.executor.slurm
    return SlurmPipelineExecutor(
        phase.pipeline, tasks=phase.tasks, time=cfg.time, partition=cfg.partition,
        cpus_per_task=phase.cpus_per_task or cfg.cpus_per_task,
        mem_per_cpu_gb=int(phase.mem_per_cpu_gb or cfg.mem_per_cpu_gb),
        gpus_per_task=cfg.gpus_per_task if phase.gpus else 0, qos=cfg.qos,
        job_name=f"{cfg.job_name}-{phase.id}", env_command=cfg.env_command, venv_path=cfg.venv_path,
        sbatch_args=cfg.sbatch_args or None, logging_dir=logging_dir, depends=depends,
    )


def submit_chain(plan, executors: list, record: dict, record_path: str, console) -> dict:
    """Submit every phase (the last executor submits its dependencies first); the cluster runs them."""
    executors[-1].run()
    record["status"] = "submitted"
    write_json_atomic(record, record_path)
    return record
