"""Run one function of a benchmark module in a new interpreter and read the peak memory it reports.

Linux carries a process's peak-RSS figure (ru_maxrss) across fork and exec, so a phase run from a
big launcher would report the launcher's size. Each phase therefore runs in its own interpreter and
prints the larger of its own high-water mark (VmHWM, which exec renews) and its largest forked
worker's (datatrove's pool with start_method="fork": the workers are its waited-for children, so
RUSAGE_CHILDREN sees them; they start from this small process, not from the launcher)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MARK = "PEAK_RSS_KIB"


def own_peak_kib() -> int:
    """This process's own high-water mark (VmHWM belongs to the address space, which exec renews;
    RUSAGE_SELF would start at the launcher's size)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def print_peak() -> None:
    peak = max(own_peak_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(MARK, peak, flush=True)


LAST_CPU_S = [0.0]  # CPU seconds (user + system) of the last `run_fresh` call, its workers included


def run_fresh(module: str, call: str) -> tuple[str, float]:
    """(stdout, peak GiB) of `module.call` run in a new interpreter (`call` is Python source). Its CPU
    seconds, worker processes included, are left in LAST_CPU_S[0]: on a shared machine they move far
    less with the load than wall time does."""
    code = f"import sys; sys.path.insert(0, {BENCH_DIR!r}); import {module}; {module}.{call}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = int(out.split(MARK)[-1].split()[0]) if MARK in out else 0
    return out, peak / 2**20
