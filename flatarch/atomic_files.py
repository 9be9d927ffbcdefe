"""Atomic file writes: the new content replaces the old whole, or the old stays as it was.

Checkpoints, logs, tables and plots are all written through :func:`atomic_write`: the content
goes to a temporary file in the target's folder, is flushed and fsync'ed, then ``os.replace``-d
over the target (atomic on POSIX and Windows within one file system), and the folder is fsync'ed
so that the new name survives a power loss. An exception mid-write leaves the previous file intact
and no temporary file behind; a kill or a power loss may leave a ``.NAME.*.tmp`` beside it, which
readers ignore and :func:`remove_temporaries` clears. :mod:`flatarch.fault_points` marks the
instants in between for the tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from . import fault_points


def _permissions_for(path: str) -> int:
    """What a plain ``open()`` would give: the existing file's mode, else ``0666 & ~umask``
    (``mkstemp`` makes 0600 files)."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: the signals that stop a run through a Python handler: Ctrl-C, ``kill``, a hang-up, and the
#: ones SLURM and submitit send before a time limit or a preemption
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
                      if hasattr(signal, n))


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Python signal handlers wait until the block ends, then run in the order the signals came.

    A handler that raises (Ctrl-C's ``KeyboardInterrupt``, SIGTERM, submitit's requeue-and-exit on
    SIGUSR2) while ``torch.save`` writes comes out of torch's C++ writer as a ``RuntimeError``
    ("unexpected pos"), not as itself: the command then prints a traceback instead of how to
    continue, and a preempted job fails instead of being requeued. Signals whose action is the
    default one (a kill) or ignored are left alone; only the main thread runs Python handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for number in _STOP_SIGNALS:
        if callable(signal.getsignal(number)):
            previous[number] = signal.signal(number, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in arrived:
            signal.raise_signal(number)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

    Text mode writes newlines as given (``newline=""``), so CSV writers control line endings.
    A stop signal that arrives meanwhile is handled once the file is in place
    (:func:`signals_deferred`).
    """
    with signals_deferred():
        _atomic_write(os.fspath(path), write, binary)


def _atomic_write(path: str, write: Callable[[IO[Any]], None], binary: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _permissions_for(path))
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_points.passed(f"written {name}", tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(directory)
    fault_points.passed(f"replaced {name}", path)


def _fsync_folder(directory: str) -> None:
    """Make the rename durable (POSIX: a folder's entries are flushed by fsync on the folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable on its own
        return
    try:
        os.fsync(fd)
    except OSError:  # some network file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def temporaries(folder: str, names: Iterable[str]) -> list[str]:
    """The temporary files :func:`atomic_write` left beside the files ``names`` of ``folder`` when
    its process was killed."""
    return sorted(path for name in names for path in glob.glob(os.path.join(glob.escape(folder),
                                                                             f".{glob.escape(name)}.*.tmp")))


def remove_temporaries(folder: str, names: Iterable[str]) -> list[str]:
    """Delete what :func:`temporaries` lists (only the process that owns those files may: another
    one writing them would lose its write); returns their paths."""
    found = temporaries(folder, names)
    for path in found:
        os.unlink(path)
    return found


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """``fig.savefig`` to ``path`` atomically; the format comes from the path's extension."""
    fmt = savefig_kwargs.pop("format", None) or os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs), binary=True)
