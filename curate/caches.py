"""Per-user caches that outlive a run: compiled numba kernels.

The ordering, dedup and packing kernels are compiled by numba on first use (seconds each). numba's
default cache sits beside the source files, which a read-only install (a container image run as
another user, a shared cluster environment, site-packages owned by root) cannot write: every process
of every run would compile again. curate points numba at the user's cache folder instead
(`$XDG_CACHE_HOME/curate/numba`, default `~/.cache/curate/numba`), so the kernels compile once per
machine and user. A `NUMBA_CACHE_DIR` the user set is left alone.
"""

from __future__ import annotations

import os
import sys


def user_cache_dir(*parts: str) -> str:
    """`$XDG_CACHE_HOME/curate/...` (default `~/.cache/curate/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "curate", *parts)


def configure_numba_cache() -> str | None:
    """Set NUMBA_CACHE_DIR (for this process and the task processes it starts) to the user's cache
    folder unless already set or not writable; returns the folder numba will use, if curate chose it."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    folder = user_cache_dir("numba")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # no writable home: numba keeps its own default
        return None
    if not os.access(folder, os.W_OK):
        return None
    os.environ["NUMBA_CACHE_DIR"] = folder
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba already imported: it read its settings then
        numba_config.CACHE_DIR = folder
    return folder
