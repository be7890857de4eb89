"""SIGTERM and SIGINT (Ctrl-C) during `curate run`: stop every worker, say where, exit 143 / 130.

`stop_on_signals()` (the CLI wraps a run in it) turns either signal into `RunInterrupted`, raised in
the launcher's main thread. It is a KeyboardInterrupt, so no `except Exception` on the way swallows it;
datatrove's local executor leaves its `with Pool()` block, which terminates the pool's workers, and
shuts its manager down; the runner marks the phase `interrupted` in run.json and the CLI prints one
line naming it. Finished tasks keep their completion markers and unfinished ones leave only
`.partial` files, so rerunning the same command resumes.

Ctrl-C in a terminal reaches every process of the foreground group, workers included. Workers must
leave stopping to the launcher (a worker that dies of KeyboardInterrupt prints a traceback, and a
pool that loses workers can hang), so the fork server that forks them is started with SIGINT ignored
(`start_forkserver_ignoring_sigint`): its children inherit that, and still die on the SIGTERM the pool
sends them.
"""

from __future__ import annotations

import contextlib
import signal
import threading

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal; `phase` is the phase it stopped in (set by the runner), if any."""

    def __init__(self, signum: int):
        super().__init__(NAMES.get(signum, str(signum)))
        self.signum = signum
        self.phase: str | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def message(self) -> str:
        where = f"in phase '{self.phase}'" if self.phase else "between phases"
        return (f"stopped by {NAMES.get(self.signum, self.signum)} {where}; its workers were stopped and finished "
                "tasks are kept: rerun the same command to resume")


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGTERM and SIGINT raise RunInterrupted once (later ones are ignored while
    the run winds down). Only from the main thread; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        for sig in NAMES:  # one stop is enough: a second Ctrl-C must not break the clean-up
            signal.signal(sig, signal.SIG_IGN)
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in NAMES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_forkserver_ignoring_sigint() -> None:
    """Start multiprocess's fork server (datatrove's default start method) with SIGINT ignored, so the
    pool workers it forks ignore Ctrl-C; nothing to do when it already runs or off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocess import forkserver

    if forkserver._forkserver._forkserver_pid is not None:
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, old)
