"""datatrove executors as curate runs them.

datatrove prints every task's INFO log (and a stats table) to the terminal; with curate's own
progress display that is noise, so tasks log INFO and above to their log file
(`OUT/<phase>/logs/task_*.log`) and only warnings to the terminal. `CURATE_LOG_LEVEL=INFO` brings the
full console log back.
"""

from __future__ import annotations

import os
import sys

import datatrove.executor.base as base
import datatrove.utils.logging as dt_logging
from datatrove.executor import LocalPipelineExecutor
from loguru import logger

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


def console_level() -> str:
    return os.environ.get("CURATE_LOG_LEVEL", "WARNING").upper()


def quiet_datatrove_logs() -> None:
    """Apply the console level in this process (the launcher) and for tasks run from it."""
    logger.remove()
    logger.add(sys.stderr, level=console_level(), format=_FORMAT)
    base.add_task_logger = _task_logger
    base.close_task_logger = _close_task_logger
    dt_logging.setup_default_logger = _default_logger


def _default_logger() -> None:
    logger.remove()
    logger.add(sys.stderr, level=console_level(), format=_FORMAT)


def _task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    prefix = f"[NODE {node_rank}] " if node_rank != -1 else ""
    # A callable format gets no traceback appended: the console shows one line per error, the log
    # file keeps the whole traceback.
    logger.add(sys.stderr, level=console_level() if local_rank == 0 else "ERROR",
               format=lambda _record: prefix + _FORMAT + "\n")
    logger.add(_best_effort(logfile), level="DEBUG", format=prefix + _FORMAT)
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def _best_effort(logfile):
    """A log sink that never fails the task or prints loguru's "Logging error" report: on a full disk
    the task's own data writes fail with the path; its log is not data."""

    def write(message) -> None:
        try:
            logfile.write(message)
            logfile.flush()
        except OSError:
            pass

    return write


def _close_task_logger(logfile) -> None:
    logger.complete()
    _default_logger()
    logfile.close()


class QuietLocalExecutor(LocalPipelineExecutor):
    """LocalPipelineExecutor whose tasks (possibly in pool processes) use curate's console level."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        quiet_datatrove_logs()
        return super()._run_for_rank(rank, local_rank, node_rank)
