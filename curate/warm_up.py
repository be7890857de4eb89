"""Start-up work of later phases done in the background of a small in-process run.

A step may have a `warm_up()` method: work its phase would otherwise do first, that does not change
what the step computes (the `order` stage's `paths` phase loads numba, about 0.8 s in a fresh process,
and its compiled kernels). When a run's tasks run in the curate process itself (small inputs,
`executor.in_process_mb`), the runner calls these in one background thread while earlier phases run:
embedding and FAISS spend most of their time outside the GIL, so the start-up costs the run little
wall time, and the phase that needs it finds it done. A warm-up that fails is ignored (the phase meets
the same problem itself and reports it).

A warm-up must not run while a step forks worker processes (datatrove's extractor sandbox forks
trafilatura workers: a fork copies only the forking thread, and a lock the warm-up held would stay
held in the child). So each warm-up starts with the first phase after the last phase before it that
holds such a step.
"""

from __future__ import annotations

import contextlib
import threading


def _forks(step) -> bool:
    """Whether the step starts processes by forking (datatrove's extractors, with their timeout sandbox)."""
    try:
        from datatrove.pipeline.extractors.base import BaseExtractor
    except ImportError:  # an older datatrove: no sandboxed extractors
        return False
    return isinstance(step, BaseExtractor)


class WarmUps:
    """The `warm_up()` calls of a run's phases, each started when the run reaches its start phase."""

    def __init__(self, phases):
        self._due: dict[int, list[tuple[int, object]]] = {}  # start phase -> (phase warmed, call)
        self._forking: set[int] = set()
        start = 0
        for i, phase in enumerate(phases):
            calls = [step.warm_up for step in phase.pipeline if callable(getattr(step, "warm_up", None))]
            if calls and start < i:
                self._due.setdefault(start, []).extend((i, call) for call in calls)
            if any(_forks(step) for step in phase.pipeline):
                self._forking.add(i)
                start = i + 1
        self._started: list[threading.Thread] = []

    def phase_starts(self, index: int, needed=lambda phase: True) -> None:
        """Called by the runner as phase `index` starts: starts the warm-ups due then (of the phases
        for which `needed(phase index)`: not those a resumed run has already done); before a phase that
        forks, waits for the running ones."""
        if index in self._forking:
            self.join()
        calls = [call for phase, call in self._due.pop(index, []) if needed(phase)]
        if calls:
            # a daemon thread: a run that ends (or fails) before the phase that needs the warm-up is not held up
            thread = threading.Thread(target=_run_all, args=(calls,), name="curate-warm-up", daemon=True)
            thread.start()
            self._started.append(thread)

    def join(self) -> None:
        for thread in self._started:
            thread.join()
        self._started = []


def _run_all(calls) -> None:
    for call in calls:
        with contextlib.suppress(Exception):
            call()
