"""Atomic file writes: the new content replaces the old whole, or the old stays as it was.

Checkpoints, logs, tables and plots are all written through :func:`atomic_write`: the content
goes to a temporary file in the target's folder, is flushed and fsync'ed, then ``os.replace``-d
over the target (atomic on POSIX and Windows within one file system). A crash or an exception
mid-write leaves the previous file intact and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def _permissions_for(path: str) -> int:
    """What a plain ``open()`` would give: the existing file's mode, else ``0666 & ~umask``
    (``mkstemp`` makes 0600 files)."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

    Text mode writes newlines as given (``newline=""``), so CSV writers control line endings.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, _permissions_for(path))
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """``fig.savefig`` to ``path`` atomically; the format comes from the path's extension."""
    fmt = savefig_kwargs.pop("format", None) or os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs), binary=True)
