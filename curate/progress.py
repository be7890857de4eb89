"""Live progress of a running phase: tasks done and documents per second.

Tasks may run in other processes (or on other machines), so they report through small files: a
`ProgressCounter` step after the reader rewrites `OUT/<phase>/progress/<rank>` with its running count
about once a second, and `PhaseMonitor` (a thread in the launching process) sums those files and
counts datatrove's completion markers (`curate/record.py`).
"""

from __future__ import annotations

import os
import threading
import time

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curate.record import count_completed


class ProgressCounter(PipelineStep):
    name = "⏱ progress"
    type = "📊 - STATS"

    def __init__(self, progress_dir: str, every_s: float = 1.0):
        super().__init__()
        self.progress_dir, self.every_s = progress_dir, every_s

    def _write(self, rank: int, count: int) -> None:
        path = os.path.join(self.progress_dir, f"{rank:05d}")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(str(count))
        os.replace(tmp, path)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        os.makedirs(self.progress_dir, exist_ok=True)
        count, last = 0, time.monotonic()
        self._write(rank, 0)
        for doc in data:
            count += 1
            now = time.monotonic()
            if now - last >= self.every_s:
                self._write(rank, count)
                last = now
            yield doc
        self._write(rank, count)


def read_progress(phase_dir: str) -> int:
    total = 0
    folder = os.path.join(phase_dir, "progress")
    if not os.path.isdir(folder):
        return 0
    for name in os.listdir(folder):
        if name.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                total += int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
    return total


class PhaseMonitor:
    """Renders one line per phase while it runs (rich when on a terminal, plain lines otherwise)."""

    def __init__(self, console, label: str, phase_dir: str, tasks: int, interval_s: float = 0.5):
        self.console, self.label, self.phase_dir, self.tasks = console, label, phase_dir, tasks
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_docs = read_progress(phase_dir)
        self._t0 = time.monotonic()
        self._progress = None

    def _status(self) -> tuple[int, int, float]:
        done = count_completed(self.phase_dir)
        docs = read_progress(self.phase_dir)
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        return done, docs, max(docs - self._start_docs, 0) / elapsed

    def __enter__(self):
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                TextColumn("{task.fields[docs]:>10,} docs  {task.fields[rate]:>8,.0f} docs/s"), TimeElapsedColumn(),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.tasks, docs=0, rate=0.0)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_plain = time.monotonic()
        while not self._stop.wait(self.interval_s):
            done, docs, rate = self._status()
            if self._progress is not None:
                self._progress.update(self._task, completed=done, docs=docs, rate=rate)
            elif time.monotonic() - last_plain >= 10:  # logs and CI: a line every 10 s, not a redraw
                last_plain = time.monotonic()
                self.console.print(f"  {self.label}: {done}/{self.tasks} tasks, {docs:,} docs, {rate:,.0f} docs/s")

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()
        done, docs, rate = self._status()
        if self._progress is not None:
            self._progress.update(self._task, completed=done, docs=docs, rate=rate)
            self._progress.stop()
        return False

    def final(self) -> tuple[int, int, float]:
        return self._status()
