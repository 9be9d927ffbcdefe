"""Named instants of the write path at which a test can stop the process, as a crash would.

Every file flatarch writes goes through :func:`flatarch.atomic_files.atomic_write`, and every
lock a sweep takes through its lock module; both call :func:`passed` at each instant after which
a crash leaves another state on disk:

=================== ==========================================================================
``written NAME``    the new content of NAME is complete in a temporary file beside it, not yet
                    moved over it (what a kill during the write, or a power loss, leaves)
``replaced NAME``   NAME holds the new content
``locked NAME``     the lock file NAME is held and names its holder
``unlocking NAME``  the holder is about to let go of it
=================== ==========================================================================

``NAME`` is the file's base name. Nothing happens unless a hook is installed (:func:`install`,
which only tests do): a write costs one ``is None`` test. Tests enumerate the points a run passes
by installing a recorder, then stop a fresh run at each one with :func:`kill_this_process`
(SIGKILL: no ``finally`` block, no ``atexit`` handler, no buffered write runs, as with ``kill -9``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

Hook = Callable[[str, str], None]

_hook: Hook | None = None


def passed(name: str, path: str) -> None:
    """The write path has reached the instant ``name`` (for the file at ``path``)."""
    if _hook is not None:
        _hook(name, path)


def install(hook: Hook | None) -> Hook | None:
    """Call ``hook(name, path)`` at every point from now on (``None``: stop); returns the previous hook."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def kill_this_process() -> None:
    """Die at once, as ``kill -9`` kills: nothing after this line runs in this process."""
    os.kill(os.getpid(), signal.SIGKILL)
