"""What a worker does with one unit, whatever the backend: claim it, run it, record the outcome.

The unit's output (the engine's epoch lines and notices) goes to ``log.txt`` in its folder, not to
the worker's terminal, so that parallel units do not interleave. An exception is the unit's
failure: it is written to ``status.json`` (one line and the traceback) and returned, so the
sweep goes on; a run that diverged (:data:`~flatarch.reference_spaces.errors.DIVERGENCES`) is
recorded as ``diverged``, its outcome. ``KeyboardInterrupt`` and ``SystemExit`` are not failures (a stopped sweep, a
cluster's preemption signal): they pass through and the unit stays resumable.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any

from flatarch.atomic_files import remove_temporaries

from ..errors import DIVERGENCES
from .lock import FileLock, LockError, describe, this_process
from .status import CLAIM_NAME, DIVERGED, FAILED, FINISHED, RUNNING, STATUS_NAME, write_status
from .units import Unit

LOG_NAME = "log.txt"
BUSY = "busy"  # another process runs the unit: not this worker's outcome to record


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute(unit: Unit, cwd: str | None = None) -> dict[str, Any]:
    """Run ``unit`` and return ``{"state", "error", "seconds", "recorded"}``: ``state`` is
    ``finished``, ``failed``, ``diverged`` or ``busy``; ``recorded`` whether ``status.json`` says so. ``cwd``:
    the sweep's working directory, where relative paths in the settings (``data_dir``, tables)
    point, when this machine has it."""
    import torch

    torch.set_num_threads(1)  # runs share their machine's cores; a unit may set its own (--threads)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    claim = FileLock(os.path.join(unit.folder, CLAIM_NAME))
    try:
        os.makedirs(unit.folder, exist_ok=True)
        claim.acquire()
    except LockError as exc:
        state, error = (BUSY, f"already running: {describe(exc.holder)}") if exc.busy else (FAILED, one_line(exc))
        return {"state": state, "error": error, "seconds": 0.0}
    except OSError as exc:
        return {"state": FAILED, "error": one_line(exc), "seconds": 0.0}
    start = time.perf_counter()
    try:
        remove_temporaries(unit.folder, (STATUS_NAME,))  # a killed worker's (this one holds the claim now)
        write_status(unit.folder, state=RUNNING, **this_process())
        failure = _run_logged(unit)
        seconds = time.perf_counter() - start
        if failure is None:
            write_status(unit.folder, state=FINISHED, seconds=seconds, **this_process())
            return {"state": FINISHED, "error": None, "seconds": seconds, "recorded": True}
        exc, trace = failure
        state = DIVERGED if isinstance(exc, DIVERGENCES) else FAILED
        write_status(unit.folder, state=state, error=one_line(exc), traceback=trace, seconds=seconds, **this_process())
        return {"state": state, "error": one_line(exc), "seconds": seconds, "recorded": True}
    finally:
        claim.release()


def _run_logged(unit: Unit) -> tuple[Exception, str] | None:
    """Run the unit with its output in its log; ``(exception, traceback)`` if it raised."""
    with open(os.path.join(unit.folder, LOG_NAME), "a", buffering=1) as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {unit.kind} {unit.key}: {describe(this_process())}")
            try:
                unit.run()
            except Exception as exc:  # a unit's failure is recorded; the sweep goes on
                trace = traceback.format_exc()
                print(trace, file=sys.stderr)
                return exc, trace
    return None
