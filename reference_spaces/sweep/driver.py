"""Running a sweep: one sweep per root, the units that are not finished, on the chosen backend.

Before anything is written, a sweep whose file changed a setting that a run's checkpoint records
in a way ``--resume`` refuses is refused as a whole, naming the run and the setting (its folders
and report stay as they were). The sweep holds ``ROOT/sweep.lock`` while it runs (a second sweep
on the same root is refused, naming the holder; a lock left by a killed sweep is taken over and
said so). It looks at every unit's folder (:mod:`.status`), marks the finished ones whose
``status.json`` a kill left behind, hands the failed and missing searches to the backend, and
each search's trainings as soon as the search has finished; ``workers`` caps the units handed out
at once. A failed unit is recorded and the sweep goes on. Ctrl-C cancels the units in flight
(they resume from their checkpoints next time) and keeps everything finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flatarch.atomic_files import remove_temporaries, temporaries

from .backends import make_backend
from .execute import BUSY, LOG_NAME
from .lock import FileLock, LockError, describe
from .plan import Run, SweepError, SweepPlan
from .status import (
    CLAIM_NAME,
    DIVERGED,
    FAILED,
    FINISHED,
    MISSING,
    RUNNING,
    STATUS_NAME,
    read_status,
    unit_state,
    write_status,
)
from .units import Unit

LOCK_NAME = "sweep.lock"
#: seconds a backend waits for an outcome before the loop looks again
WAIT_S = 5.0


def lock_root(root: str, say: Callable[[str], None]) -> FileLock:
    """Take ``ROOT/sweep.lock`` or raise :class:`SweepError` naming the sweep that holds it."""
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"[run] root {root} cannot be created ({exc.strerror or exc}); choose a writable folder") \
            from None
    lock = FileLock(os.path.join(root, LOCK_NAME))
    try:
        lock.acquire()
    except LockError as exc:
        if not exc.busy:
            raise SweepError(str(exc)) from None
        command = f" ({exc.holder['command']})" if exc.holder.get("command") else ""
        raise SweepError(f"another sweep runs on {root}: {describe(exc.holder)}{command}; wait for it, stop it, "
                         "or choose another root") from None
    if lock.stale:
        say(f"taking over {lock.path}: the sweep that held it ({describe(lock.stale)}) no longer runs")
    return lock


def refuse_conflicts(runs: tuple[Run, ...]) -> None:
    """Raise :class:`SweepError` when a run's checkpoint holds settings the sweep would have to refuse."""
    found = [(unit, changes) for run in runs for unit in run.units if (changes := unit.conflicts())]
    if found:
        unit, changes = found[0]
        more = f" (and {len(found) - 1} more run(s))" if len(found) > 1 else ""
        raise SweepError(f"run {unit.key} was made with other settings ({'; '.join(changes)}){more}; restore them in "
                         f"the sweep file, or move {unit.folder} away to start it over")


def states(runs: tuple[Run, ...]) -> dict[str, tuple[Unit, str, str]]:
    """``{unit key: (unit, state, detail)}`` of every unit of ``runs``."""
    out = {}
    for run in runs:
        for unit in run.units:
            s = unit_state(unit)
            out[unit.key] = (unit, s.state, s.detail)
    return out


def run_sweep(plan: SweepPlan, backend: Any = None, say: Callable[[str], None] = print) -> dict[str, int]:
    """Run what is not finished of ``plan``; returns the count of units per state at the end.

    ``backend``: a backend object (default: the plan's, built here); building it checks its
    options, so callers may build it first to refuse bad ones before anything is written.
    """
    backend = backend or make_backend(plan.backend, root=plan.root, cwd=plan.cwd, workers=plan.workers,
                                      options=plan.options)
    refuse_conflicts(plan.runs)
    lock = lock_root(plan.root, say)
    try:
        _Sweep(plan, backend, say).run()
    finally:
        lock.release()
    counts = {state: 0 for state in (FINISHED, DIVERGED, FAILED, RUNNING, MISSING)}
    for _, state, _ in states(plan.runs).values():
        counts[state] += 1
    return counts


class _Sweep:
    def __init__(self, plan: SweepPlan, backend: Any, say: Callable[[str], None]):
        self.plan, self.backend, self.say = plan, backend, say
        self.trains_of = {run.search.key: run.trains for run in plan.runs}
        self.in_flight: dict[Any, Unit] = {}
        self.done = 0

    def todo(self) -> list[Unit]:
        """Units to run now: unfinished searches, and unfinished trainings of finished searches."""
        now = states(self.plan.runs)
        for unit, state, _ in now.values():
            if state == FINISHED:
                _tidy(unit)
        queue, elsewhere, retried = [], 0, 0
        for run in self.plan.runs:
            _, search_state, _ = now[run.search.key]
            units = run.units if search_state == FINISHED else (run.search,)
            for unit in units:
                _, state, _ = now[unit.key]
                elsewhere += state == RUNNING
                retried += state == FAILED
                if state in (FAILED, MISSING):
                    queue.append(unit)
        finished = sum(state == FINISHED for _, state, _ in now.values())
        diverged = sum(state == DIVERGED for _, state, _ in now.values())
        diverged = f", {diverged} diverged (not run again)" if diverged else ""
        self.say(f"sweep {self.plan.root}: {len(self.plan.runs)} runs, {len(now)} units: {finished} finished"
                 f"{diverged}, {len(queue)} to run ({retried} failed before), {elsewhere} running elsewhere; "
                 f"backend {self.plan.backend}")
        return queue

    def run(self) -> None:
        queue = self.todo()
        if not queue:
            return
        self.backend.start()
        try:
            while queue or self.in_flight:
                free = len(queue) if self.plan.workers is None else self.plan.workers - len(self.in_flight)
                if free > 0 and queue:
                    batch, queue = queue[:free], queue[free:]
                    self.in_flight.update(zip(self.backend.submit(batch), batch))
                for handle, outcome in self.backend.wait(list(self.in_flight), WAIT_S):
                    queue += self.ended(self.in_flight.pop(handle), outcome)
        except BaseException:
            if self.in_flight:
                self.backend.cancel(list(self.in_flight))
                self.say(f"stopped: {len(self.in_flight)} unit(s) in flight were cancelled; they continue from their "
                         "checkpoints when the sweep runs again")
            raise
        finally:
            self.backend.close()

    def ended(self, unit: Unit, outcome: dict[str, Any]) -> list[Unit]:
        """Record one unit's outcome; returns the units it makes ready (a search's trainings)."""
        self.done += 1
        state = outcome.get("state")
        if state == BUSY:
            self.say(f"[{self.done}] {unit.key}: skipped, {outcome.get('error')}")
            return []
        if state == FINISHED and unit_state(unit).state != FINISHED:
            state, outcome = FAILED, {"error": "it ended without a result file that records its settings"}
        if state == DIVERGED:
            self.say(f"[{self.done}] {unit.key}: diverged, no result: {outcome.get('error')}")
            return []
        if state != FINISHED:
            error = outcome.get("error") or "unknown error"
            if not outcome.get("recorded"):  # it ended outside the worker's record (a dead worker, a lost job)
                _record_failure(unit, error)
            self.say(f"[{self.done}] {unit.key}: FAILED: {error} (log: {os.path.join(unit.folder, LOG_NAME)})")
            return []
        diverged = (unit.result() or {}).get("diverged_epoch")
        diverged = f"; diverged from epoch {diverged}, so not a value of the report" if diverged is not None else ""
        self.say(f"[{self.done}] {unit.key}: finished in {outcome.get('seconds', 0.0):.1f} s{diverged}")
        return [t for t in self.trains_of.get(unit.key, ()) if unit_state(t).state in (FAILED, MISSING)]


def _tidy(unit: Unit) -> None:
    """What a kill between a finished unit's result file and its worker's last steps left: a status
    that does not say finished, a temporary file of a status write, a claim file of a worker that is
    gone. Done under the unit's claim (a live worker that holds it tidies up itself)."""
    claim = os.path.join(unit.folder, CLAIM_NAME)
    if read_status(unit.folder).get("state") == FINISHED and not os.path.exists(claim) \
            and not temporaries(unit.folder, (STATUS_NAME,)):
        return
    try:
        lock = FileLock(claim).acquire()
    except LockError:
        return
    try:
        remove_temporaries(unit.folder, (STATUS_NAME,))
        if read_status(unit.folder).get("state") != FINISHED:
            write_status(unit.folder, state=FINISHED, found="finished when a later sweep looked")
    finally:
        lock.release()  # and its file


def _record_failure(unit: Unit, error: str) -> None:
    try:
        write_status(unit.folder, state=FAILED, error=error)
    except OSError:
        pass  # a folder that cannot be written: the error is on the terminal, and the unit stays unfinished
