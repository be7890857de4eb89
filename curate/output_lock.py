"""One run at a time per output folder.

`curate run` holds a lock on `OUT/.curate.lock` from before it looks at the folder until it returns; a
second run into the same folder refuses at once, naming the process that holds it. The lock is a POSIX
record lock (`fcntl.lockf`): the kernel drops it when the process that took it ends, however it ends,
so a lock file left by a killed run never blocks the rerun, and processes forked by the run (datatrove's
manager) do not inherit it. The file itself only says who held it last. On a cluster the lock covers
submitting (Slurm) or the whole run (Ray); it is advisory and local to the file system's locking.
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
    try:  # O_NOFOLLOW: a link planted under this name is not written through
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise OutputLockedError(f"cannot lock the output folder {out_dir} ({path}: {why})") from e
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise OutputLockedError(f"cannot lock the output folder {out_dir}: {e.strerror or e}") from e
            raise OutputLockedError(
                f"{out_dir} is in use by another curate run ({_holder(fd)}); wait for it to end, or choose "
                "another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "command": sys.argv}).encode() + b"\n")
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 65536, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on {info['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file does not say which"
