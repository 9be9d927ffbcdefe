"""Runs of a function in worker processes on this machine: the one process pool behind
``flatarch search --seeds --workers`` and the ``local`` backend of ``flatarch sweep``.

Workers are spawned (never forked: a forked copy of a process that already ran torch can hang
on its thread pools), use one torch thread each (N runs share the machine's cores; more threads
per run oversubscribe them), and exit on their own when the process that started them dies
(a SIGKILL-ed sweep must not leave orphans writing into run folders a rerun is about to use).
The pool's queues hold named semaphores; when a SIGKILL leaves them behind, Python's resource
tracker removes them as it should, without the "leaked semaphore objects" warning it would print
on the terminal (:func:`_start_quiet_tracker`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: seconds between a worker's checks that the process which started it is still alive
PARENT_POLL_S = 1.0
#: the resource tracker's warning when it removes the semaphores of a killed process (a ``-W`` filter)
TRACKER_WARNING = "ignore:resource_tracker:UserWarning:multiprocessing.resource_tracker"


def _start_quiet_tracker() -> None:
    """Start this process's resource tracker (if it has none yet) without its leak warning: after a
    SIGKILL it removes the pool's semaphores and says so on the terminal, which only alarms."""
    if os.name != "posix":
        return
    from multiprocessing import resource_tracker

    sys.warnoptions.append(TRACKER_WARNING)  # read once, when the tracker's command line is made
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(TRACKER_WARNING)


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


class ProcessPool:
    """``workers`` spawned processes running submitted calls; a thin layer over
    :class:`concurrent.futures.ProcessPoolExecutor` that can also stop its workers at once."""

    def __init__(self, workers: int):
        _start_quiet_tracker()
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, fn: Callable[..., R], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def close(self, terminate: bool = False) -> None:
        """Wait for the running calls, or with ``terminate`` cancel the queued ones and stop the
        workers now (what an interrupted sweep wants: its runs resume from their checkpoints)."""
        if not terminate:
            self._pool.shutdown(wait=True)
            return
        stop = getattr(self._pool, "terminate_workers", None)  # Python >= 3.14
        if stop is not None:
            stop()
        else:  # before 3.14: the executor's own record of its processes (shutdown clears it)
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


def map_in_order(fn: Callable[[T], R], items: Sequence[T], workers: int = 1,
                 on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, ``workers`` at a time in worker processes (in this
    process when ``workers == 1``). ``on_result(index, result)`` is called as each one ends.
    The first exception stops the rest and is raised."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: list[Any] = [None] * len(items)
    if workers == 1 or len(items) <= 1:
        for k, item in enumerate(items):
            results[k] = fn(item)
            if on_result is not None:
                on_result(k, results[k])
        return results
    pool = ProcessPool(min(workers, len(items)))
    ok = False
    try:
        index = {pool.submit(fn, item): k for k, item in enumerate(items)}
        for future in as_completed(index):
            results[index[future]] = future.result()
            if on_result is not None:
                on_result(index[future], results[index[future]])
        ok = True
    finally:
        pool.close(terminate=not ok)
    return results

