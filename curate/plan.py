"""What a stage builder hands the runner: the contract between `stages/` and the framework.

A *document* stage's builder returns a list of datatrove steps that transform or filter a stream of
documents; the runner fuses consecutive document stages into one sharded pass that reads the current
documents and writes the new ones.

A *global* stage needs to see every document before it can decide anything (dedup, neighbours,
ordering). Its builder returns a `GlobalPlan`: one or more phases run in order (each one datatrove
executor, chained with `depends`), then optionally per-document `apply` steps (for example "drop the
documents listed as duplicates") that the runner fuses into the next document pass, or a new
document set written by its last phase.

The runner's own plan of a whole run (`RunPlan`: every phase's pipeline and task count, in order)
lives here too, so that the executors' modules (Slurm, Ray) and the run record read it without
importing the runner.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from curate.documents import DocumentsWriter
from curate.errors import MissingStageError
from curate.paths import safe_name
from curate.recipe import Recipe
from curate.samples import SAMPLES_SUBDIR, RemovedSampleWriter


def write_progress(progress_dir: str, rank: int, count: int) -> None:
    """Publish task `rank`'s running count (atomically: the monitor never reads a half-written file)."""
    path = os.path.join(progress_dir, f"{rank:05d}")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(count))
    os.replace(tmp, path)


class ProgressReporter:
    """Writes one task's count at most every `every_s` seconds (and always on `done`); for steps that
    count their own progress (`Phase.counts_progress`), e.g. documents embedded rather than read."""

    def __init__(self, progress_dir: str, rank: int, every_s: float = 1.0):
        self.progress_dir, self.rank, self.every_s = progress_dir, rank, every_s
        self.count, self._last = 0, time.monotonic()
        os.makedirs(progress_dir, exist_ok=True)
        write_progress(progress_dir, rank, 0)

    def add(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            write_progress(self.progress_dir, self.rank, self.count)
            self._last = now

    def done(self) -> None:
        write_progress(self.progress_dir, self.rank, self.count)


@dataclass
class Phase:
    """One executor's worth of work inside a global stage.

    name: short name, unique inside the stage ("signatures", "clusters"); the phase writes under
        `OUT/<stage_id>.<name>/` (see `StageContext.phase_dir`).
    pipeline: datatrove steps (or callables with datatrove's (data, rank, world_size) signature).
    tasks: how many tasks this phase runs as; `None` means the run's task count.
    reads_documents: the runner prepends a reader of the current document set (sharded over tasks).
    gpus: GPUs per task this phase can use (a resource hint for cluster executors).
    counts_progress: a step of the phase writes the phase's progress count itself (documents done
        rather than read, e.g. embedded), so the runner adds no counter after the reader; such a step
        takes the progress folder as `OUT/<stage_id>.<name>/progress` (`StageContext.phase_dir`).
    """

    name: str
    pipeline: list[Any]
    tasks: int | None = None
    reads_documents: bool = False
    gpus: int = 0
    cpus_per_task: int | None = None
    mem_per_cpu_gb: float | None = None
    counts_progress: bool = False


@dataclass
class GlobalPlan:
    """What a global stage runs.

    phases: run in order, each depending on the previous one.
    apply: per-document steps run in the next document pass (after all `phases`), e.g. a filter
        that drops documents the phases marked as duplicates.
    documents: a folder of `*.jsonl.gz` documents written by the last phase that replaces the
        current document set (for stages that reorder or rewrite the corpus wholesale).
    outputs: what the stage produces for the user, by name (`windows`: a folder, `order.parquet`: a
        file); `OUT/final/<name>` points there when the run ends (see `curate/final.py`).
    """

    phases: list[Phase]
    apply: list[Any] = field(default_factory=list)
    documents: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageContext:
    """Everything a builder may know about the run it is part of.

    stage_id: the stage's id in the recipe (its name, or `name_2`, ... when a name repeats).
    output_dir: the run's output folder (OUT).
    phase_dir_for_documents: the folder of the document pass this stage's steps run in (document
        stages) or of the pass its `apply` steps run in (global stages).
    tasks / workers: the run's task count and local parallelism.
    seed: the run's seed; every random choice in a stage derives from it.
    keep_removed: whether filters should write removed documents with their reason.
    documents_dir: the folder holding the current document set (input of a global stage's phases).
    label_key: metadata key holding a topic label, when the input has one (used for quality figures).
    upstream: (stage_id, stage_name) of every earlier stage in the recipe, in order.
    """

    stage_id: str
    output_dir: str
    phase_dir_for_documents: str
    tasks: int = 1
    workers: int = 1
    seed: int = 0
    keep_removed: bool = False
    documents_dir: str | None = None
    label_key: str | None = None
    upstream: tuple[tuple[str, str], ...] = ()

    def latest(self, stage_name: str) -> str | None:
        """The id of the most recent earlier stage registered as `stage_name` (e.g. "embed"), if any."""
        for stage_id, name in reversed(self.upstream):
            if name == stage_name:
                return stage_id
        return None

    def upstream_data_dir(self, stage_name: str, phase: str, required: bool = True) -> str | None:
        """Data folder of phase `phase` of the most recent earlier `stage_name` stage: what a stage
        that needs an earlier stage's output reads. With none in the recipe before this stage:
        MissingStageError naming both (or None when not `required`)."""
        stage_id = self.latest(stage_name)
        if stage_id is None:
            if not required:
                return None
            raise MissingStageError(f"{self.stage_id} needs an earlier '{stage_name}' stage in the recipe")
        return self.stage_data_dir(stage_id, phase)

    def stage_data_dir(self, stage_id: str, phase: str) -> str:
        """Data folder of phase `phase` of an earlier global stage `stage_id`."""
        return os.path.join(self.output_dir, safe_name(f"{stage_id}.{phase}", "phase folder", dotted=True), "data")

    def phase_dir(self, name: str) -> str:
        """Folder of this (global) stage's phase `name`: completions, stats, logs and its data."""
        return os.path.join(self.output_dir, safe_name(f"{self.stage_id}.{name}", "phase folder", dotted=True))

    def data_dir(self, name: str) -> str:
        """Where phase `name` keeps its artifacts (kept apart from datatrove's bookkeeping)."""
        return os.path.join(self.phase_dir(name), "data")

    def removed_writer(self) -> DocumentsWriter:
        """A writer for documents this stage drops (with `metadata.filter_reason`): every one of them
        when the recipe asks to keep them (`removed/`), else a few per reason for the report
        (`removed_samples/`, see `curate/samples.py`)."""
        if not self.keep_removed:
            return RemovedSampleWriter(os.path.join(self.phase_dir_for_documents, SAMPLES_SUBDIR, self.stage_id))
        return DocumentsWriter(os.path.join(self.phase_dir_for_documents, "removed", self.stage_id))


# ---------------------------------------------------------------------------------------------------
# the runner's plan of a whole run


@dataclass
class PlannedPhase:
    id: str  # folder name under OUT
    label: str  # what the terminal shows
    kind: str  # "documents" or "global"
    stages: list[str]
    pipeline: list[Any]
    tasks: int
    documents_out: str | None = None  # the document set this phase writes, if any
    step_stages: list[str] = field(default_factory=list)  # per pipeline step: the stage it belongs to
    gpus: int = 0
    cpus_per_task: int | None = None
    mem_per_cpu_gb: float | None = None


@dataclass
class RunPlan:
    recipe: Recipe
    output_dir: str
    tasks: int
    workers: int
    phases: list[PlannedPhase] = field(default_factory=list)
    workers_auto: bool = False  # neither the recipe nor the command line set `workers`
    final_documents: str | None = None
    final_outputs: dict[str, str] = field(default_factory=dict)  # name -> path, for OUT/final

    def fingerprint(self) -> dict:
        stages = [
            {"id": s.id, "name": s.name, "settings": s.settings.model_dump(mode="json")} for s in self.recipe.stages
        ]
        return {
            "input": self.recipe.input.model_dump(mode="json"),
            "seed": self.recipe.executor.seed,
            "stages": stages,
            "phases": [{"id": p.id, "tasks": p.tasks} for p in self.phases],
        }
