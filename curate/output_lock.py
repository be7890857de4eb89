"""One run at a time per output folder.

`curate run` holds a lock on `OUT/.curate.lock` from before it looks at the folder until it returns; a
second run into the same folder refuses at once, naming the process that holds it. The lock is a POSIX
record lock (`fcntl.lockf`): the kernel drops it when the process that took it ends, however it ends,
so a lock file left by a killed run never blocks the rerun, and processes forked by the run (datatrove's
manager) do not inherit it. The file says who holds it; a run that ends removes it. On a cluster the
lock covers submitting (Slurm) or the whole run (Ray); it is advisory and local to the file system.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time

LOCK_NAME = ".curate.lock"


class OutputLockedError(Exception):
    """Another run holds the output folder (or it cannot be locked); the message says which and what to do."""


@contextlib.contextmanager
def output_lock(out_dir: str):
    """Hold the lock on `out_dir` (created if missing) for the block; OutputLockedError if another run has it."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputLockedError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from e
    path = os.path.join(out_dir, LOCK_NAME)
    fd = _acquire(out_dir, path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "command": sys.argv}).encode() + b"\n")
        yield path
    finally:
        # a finished run leaves no lock file (its output holds only what the run made); removed while
        # still locked, so a run that opened the old file sees it replaced and locks the new one
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # releases the lock


def _acquire(out_dir: str, path: str) -> int:
    """An fd of `path` holding the lock; retried when the file was replaced between open and lock."""
    for _ in range(100):
        try:  # O_NOFOLLOW: a link planted under this name is not written through
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
            raise OutputLockedError(f"cannot lock the output folder {out_dir} ({path}: {why})") from e
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise OutputLockedError(f"cannot lock the output folder {out_dir}: {e.strerror or e}") from e
            raise OutputLockedError(f"{out_dir} is in use by another curate run ({holder}); wait for it to end, "
                                    "or choose another output folder") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except OSError:
            same = False
        if same:
            return fd
        os.close(fd)  # the run that held it removed the file as we opened it: lock the new one
    raise OutputLockedError(f"cannot lock the output folder {out_dir}: {path} keeps being replaced")


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on {info['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file does not say which"
