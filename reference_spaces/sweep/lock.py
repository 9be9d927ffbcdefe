"""Exclusive file locks that name their holder: one sweep per root, one process per run.

The lock is an ``fcntl.flock`` on a small file that holds the holder's pid, host and start time.
The kernel (or, on a shared file system, its lock manager) drops the lock when the holder dies,
however it dies, so a lock is never left behind by a killed sweep; the file then names a holder
that no longer holds it, which is how a stale lock is recognised and reported. A holder that lets
go removes the file while it still holds the lock, and whoever locks a file checks afterwards
that it is still the one at the path (else it was removed in between, and it locks the new one),
so a clean finish leaves no lock file and no two processes ever hold one lock.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from typing import Any

from flatarch import fault_points

from ..errors import UsageError


class LockError(UsageError):
    """The lock is held by another process (``holder`` names it) or cannot be taken at all."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None, busy: bool = False):
        super().__init__(message)
        self.holder = holder or {}
        self.busy = busy


def job_id() -> str | None:
    """The cluster job this process runs in, where there is one (SLURM, submitit)."""
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(name):
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            return f"{os.environ[name]}_{task}" if name == "SLURM_ARRAY_JOB_ID" and task else os.environ[name]
    return None


def this_process() -> dict[str, Any]:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    if job_id():
        info["job"] = job_id()
    return info


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unknown process"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}"
    if holder.get("job"):
        text += f" (job {holder['job']})"
    return text + (f" since {holder['since']}" if holder.get("since") else "")


def read_holder(path: str) -> dict[str, Any]:
    """Who the file says holds (or last held without releasing) the lock; ``{}`` when nobody."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


class FileLock:
    """``with FileLock(path):`` holds the lock or raises :class:`LockError` naming the holder.

    After :meth:`acquire`, ``stale`` is the holder the file still named although it no longer held
    the lock (a process that was killed), or ``{}``.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self.stale: dict[str, Any] = {}

    def acquire(self) -> FileLock:
        while True:
            fd = self._lock_file()
            if _is_at(fd, self.path):
                break
            os.close(fd)  # its holder removed it after we opened it: lock the file now at the path
        self.stale = read_holder(self.path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({**this_process(), "command": " ".join(sys.argv)}) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        fault_points.passed(f"locked {os.path.basename(self.path)}", self.path)
        return self

    def _lock_file(self) -> int:
        """A descriptor of the file at the path (made if missing), locked, or :class:`LockError`."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(f"cannot open the lock file {self.path} ({exc.strerror or exc}); the folder must be "
                            "writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                holder = read_holder(self.path)
                raise LockError(f"{self.path} is held by {describe(holder)}", holder, busy=True) from None
            raise LockError(f"cannot lock {self.path} ({exc.strerror}); the file system must support "
                            "file locks (flock)") from None
        return fd

    def release(self) -> None:
        """Remove the file while still holding it, then drop the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fault_points.passed(f"unlocking {os.path.basename(self.path)}", self.path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _is_at(fd: int, path: str) -> bool:
    """Whether the open file ``fd`` is the file at ``path`` (not one removed from there)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def is_held(path: str) -> bool:
    """Whether some process holds the lock on ``path`` now (a probe: takes and drops it at once)."""
    import fcntl

    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDWR)  # an exclusive lock over NFS needs a descriptor open for writing
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
