"""How a command that stops before its end says so: Ctrl-C, SIGTERM, or a file that cannot be
written or read (a full disk). Each prints one line with how to continue and exits with the
status of the signal (130 for SIGINT, 143 for SIGTERM, as a shell reports them), or 1.

While :func:`sigterm_interrupts` is active, SIGTERM raises :class:`Terminated` (a
``KeyboardInterrupt``) in the main thread, so every ``except KeyboardInterrupt`` path (the
search's hint, a sweep cancelling its units) also runs for ``kill``, a cluster's preemption or a
container's stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` inside the block; the previous handler is back after it
    (only the main thread can take signals: elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_hint(resume: str, out: str | None, folders: list[str | None]) -> str:
    """How to continue a stopped run: ``resume`` (its command with ``--resume`` and no settings) where a
    checkpoint in one of ``folders`` records the settings; else (stopped before its first epoch
    ended) the same command plus ``--out OUT --resume``."""
    from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME

    if not out:
        return "continue with: the same command plus --resume"
    if any(folder and os.path.exists(os.path.join(folder, CHECKPOINT_NAME)) for folder in folders):
        return f"continue with: {resume}"
    return f"no epoch had ended, so nothing records the settings yet; continue with: the same command plus --out " \
           f"{out} --resume"


def stopped(prog: str, exc: KeyboardInterrupt | OSError, hint: str) -> int:
    """Say that ``prog`` stopped (interrupted, or ``exc``'s error), then ``hint``; the exit status:
    128 + the signal's number for an interrupt, as a shell reports it, else 1."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"\ninterrupted; {hint}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    print(f"{prog}: error: {exc}; {hint}", file=sys.stderr)
    return 1
