"""Run one function of a benchmark module in a new interpreter and read the peak memory it reports.

Linux carries a process's peak-RSS figure across fork and exec, so a launcher that must report the
memory of a phase keeps itself small (it never holds the corpus) and lets each phase, in its own
process, print its peak: its own or its largest forked worker's (datatrove's pool with
start_method="fork", whose workers are waited for, so RUSAGE_CHILDREN sees them)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MARK = "PEAK_RSS_KIB"


def print_peak() -> None:
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(MARK, peak, flush=True)


def run_fresh(module: str, call: str) -> tuple[str, float]:
    """(stdout, peak GiB) of `module.call` run in a new interpreter (`call` is Python source)."""
    code = f"import sys; sys.path.insert(0, {BENCH_DIR!r}); import {module}; {module}.{call}"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    peak = int(out.split(MARK)[-1].split()[0]) if MARK in out else 0
    return out, peak / 2**20
