"""Writes that a killed task can never leave half-done: write to a temporary name, then rename.

Every artifact a stage writes outside datatrove's writers (parquet tables, numpy arrays, json
manifests) goes through these, so a rerun never trusts a truncated file. Temporary names never match
the globs readers use (`*.parquet`, `*.npy`, `*.jsonl.gz`): they end in `.tmp-<pid>` or `.partial`.
A write that fails (a full disk, say) raises an OSError that names the file it was writing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on error removed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as e:
            named = with_path(e, path)
            if named is e:
                raise
            raise named from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


PARTIAL = ".partial"


def partial_name(path: str) -> str:
    """The name a streamed file is written under until it is complete (then renamed to `path`)."""
    return path + PARTIAL


def with_path(e: OSError, path: str) -> OSError:
    """`e` itself when it names a file; otherwise the same error naming `path` (a write to a full disk
    raises ENOSPC without saying which file, and the message is all a user sees)."""
    if e.filename is not None:
        return e
    if e.errno is not None:
        return type(e)(e.errno, e.strerror or str(e), path)
    if _disk_full(path):  # numpy's short write says only "N requested and M written"
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({e})", path)
    return OSError(f"{e} (writing {path})")


def _disk_full(path: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 1 << 20
    except OSError:
        return False


def write_parquet_atomic(df, path: str) -> None:
    """Write a polars DataFrame to parquet atomically."""
    with atomic_path(path) as tmp:
        try:
            df.write_parquet(tmp)
        except Exception as e:  # polars reports I/O failures as ComputeError("... (os error 28)")
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code.group(1)), f"{os.strerror(int(code.group(1)))} (polars: {e})") from e


def write_numpy_atomic(array, path: str) -> None:
    """Write a numpy array (`.npy`) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_json_atomic(obj: Any, path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
