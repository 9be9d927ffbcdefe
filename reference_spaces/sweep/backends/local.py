"""``backend = "local"``: ``workers`` processes on this machine, one torch thread each.

The pool is :class:`flatarch.reference_spaces.engine.pool.ProcessPool`, the one behind
``flatarch search --seeds --workers``. With one worker the units run in this process, one after
another.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...engine.pool import ProcessPool
from ..execute import execute, one_line
from ..units import Unit


class _Inline:
    """A unit run in this process when waited for (one worker: nothing to run it in parallel)."""

    def __init__(self, unit: Unit, cwd: str):
        self.unit, self.cwd = unit, cwd


class LocalBackend:
    OPTIONS: dict = {}

    def __init__(self, *, root: str, cwd: str, workers: int | None):
        self.cwd = cwd
        self.workers = workers or 1
        self.pool: ProcessPool | None = None

    def start(self) -> None:
        if self.workers > 1:
            self.pool = ProcessPool(self.workers)

    def submit(self, units: Sequence[Unit]) -> list[Any]:
        if self.pool is None:
            return [_Inline(u, self.cwd) for u in units]
        try:
            return [self.pool.submit(execute, u, self.cwd) for u in units]
        except BrokenProcessPool:  # a worker died (killed, out of memory): a fresh pool for the rest
            self.pool = ProcessPool(self.workers)
            return [self.pool.submit(execute, u, self.cwd) for u in units]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        inline = [h for h in handles if isinstance(h, _Inline)]
        if inline:
            return [(inline[0], execute(inline[0].unit, inline[0].cwd))]
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(f, _outcome(f)) for f in done]

    def cancel(self, handles: Sequence[Any]) -> None:
        if self.pool is not None:
            self.pool.close(terminate=True)
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def _outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except BrokenProcessPool:
        # every unit in flight ends so, not only the one whose worker died: the pool stops them all
        return {"state": "failed", "error": "a worker process died (killed, or out of memory?) and the pool stopped "
                                            "the units it was running"}
    except Exception as exc:
        return {"state": "failed", "error": one_line(exc)}
