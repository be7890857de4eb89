"""The run record: `OUT/run.json`, owned by one typed class that the runner, Slurm, Ray and the
report all use, and the one place that counts the tasks of a phase that are done.

run.json holds the recipe's source and name, the executor, the run's task and worker counts, the plan's
fingerprint (input, seed, stage settings, phase ids and task counts) and its hash, the final document
set, and per phase: id, label, kind, stages, tasks, the document set it writes, which stage each
pipeline step belongs to, wall time, status (pending, done, failed; on Slurm also submitted and
cancelled) and, on Slurm, the job ids. A rerun with the same fingerprint keeps the earlier times and
statuses; a different fingerprint is refused unless the user asks to overwrite.

A task is done when datatrove wrote its completion marker `OUT/<phase>/completions/<rank:05d>`;
`completed_ranks` is the only reader of those markers in curate.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from curate.atomic import write_json_atomic
from curate.errors import RunError

RUN_FILE = "run.json"
COMPLETIONS = "completions"


def completed_ranks(phase_dir: str) -> set[int]:
    """Ranks of a phase that datatrove marked complete."""
    folder = os.path.join(phase_dir, COMPLETIONS)
    if not os.path.isdir(folder):
        return set()
    return {int(name) for name in os.listdir(folder) if name.isdigit()}


def count_completed(phase_dir: str) -> int:
    return len(completed_ranks(phase_dir))


def incomplete_ranks(phase_dir: str, tasks: int) -> list[int]:
    """Ranks without datatrove's completion marker, in order."""
    done = completed_ranks(phase_dir)
    return [r for r in range(tasks) if r not in done]


def fingerprint_hash(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PhaseRecord:
    id: str  # folder name under OUT
    label: str
    kind: str  # "documents" or "global"
    stages: list[str]
    tasks: int
    documents_out: str | None = None
    step_stages: list[str] = field(default_factory=list)  # per pipeline step: the stage it belongs to
    wall_s: float = 0.0
    status: str = "pending"
    slurm_job: str | None = None
    slurm_stats_job: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> PhaseRecord:
        return cls(d["id"], d.get("label", d["id"]), d.get("kind", "?"), list(d.get("stages", [])),
                   int(d.get("tasks", 0)), d.get("documents_out"), list(d.get("step_stages") or []),
                   float(d.get("wall_s", 0.0)), d.get("status", "?"), d.get("slurm_job"), d.get("slurm_stats_job"))


@dataclass
class RunRecord:
    output_dir: str
    recipe: str
    name: str
    executor: str
    tasks: int
    workers: int
    fingerprint: dict
    final_documents: str | None
    phases: list[PhaseRecord]
    status: str | None = None  # None while running; done, failed or submitted
    fingerprint_hash: str = ""

    def __post_init__(self):
        self.fingerprint_hash = self.fingerprint_hash or fingerprint_hash(self.fingerprint)

    @classmethod
    def for_plan(cls, plan, executor: str) -> RunRecord:
        """A fresh record of `plan` (a `curate.plan.RunPlan`), every phase pending."""
        phases = [PhaseRecord(p.id, p.label, p.kind, list(p.stages), p.tasks, p.documents_out, list(p.step_stages))
                  for p in plan.phases]
        return cls(plan.output_dir, plan.recipe.source, plan.recipe.name, executor, plan.tasks, plan.workers,
                   plan.fingerprint(), plan.final_documents, phases)

    @classmethod
    def path_in(cls, output_dir: str) -> str:
        return os.path.join(output_dir, RUN_FILE)

    @classmethod
    def exists(cls, output_dir: str) -> bool:
        return os.path.exists(cls.path_in(output_dir))

    @classmethod
    def load(cls, output_dir: str) -> RunRecord:
        """The record in `output_dir` (FileNotFoundError when there is none)."""
        with open(cls.path_in(output_dir)) as f:
            d = json.load(f)
        return cls(output_dir, d.get("recipe", "?"), d.get("name", "?"), d.get("executor", "?"), int(d.get("tasks", 0)),
                   int(d.get("workers", 0)), d.get("fingerprint", {}), d.get("final_documents"),
                   [PhaseRecord.from_dict(p) for p in d.get("phases", [])], d.get("status"),
                   d.get("fingerprint_hash", ""))

    @property
    def path(self) -> str:
        return self.path_in(self.output_dir)

    def phase(self, phase_id: str) -> PhaseRecord:
        return next(p for p in self.phases if p.id == phase_id)

    def phase_dir(self, phase: PhaseRecord) -> str:
        return os.path.join(self.output_dir, phase.id)

    def incomplete_ranks(self, phase: PhaseRecord) -> list[int]:
        return incomplete_ranks(self.phase_dir(phase), phase.tasks)

    def resume(self, previous: RunRecord) -> None:
        """Keep the time already spent, and the statuses, of an earlier (interrupted) run of the same plan."""
        old = {p.id: p for p in previous.phases}
        for p in self.phases:
            if p.id in old:
                p.wall_s, p.status = old[p.id].wall_s, old[p.id].status
            else:
                p.wall_s, p.status = 0.0, "pending"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["output_dir"]
        if d["status"] is None:
            del d["status"]
        if self.executor != "slurm":
            for p in d["phases"]:
                del p["slurm_job"], p["slurm_stats_job"]
        return d

    def save(self) -> None:
        """Write run.json atomically; a failed write is a RunError saying what to do."""
        try:
            write_json_atomic(self.to_dict(), self.path)
        except OSError as e:
            raise RunError(f"cannot write {self.path}: {e.strerror or e}; free space or choose another output folder, "
                           "then rerun the same command to resume") from e
