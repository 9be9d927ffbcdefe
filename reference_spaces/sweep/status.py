"""Where a unit stands, from its folder alone, and the status file a worker keeps there.

States: ``finished`` (its result file records its settings), ``failed`` (the last attempt raised;
``status.json`` holds the error), ``diverged`` (the last attempt's run diverged with no epoch of
finite losses to report, so it has no result file; ``status.json`` holds the message), ``running``
(a process holds the unit's claim), ``missing`` (never started, interrupted, killed, or finished
with other settings). A sweep runs the failed and missing units again, not the diverged ones: the
same settings diverge again (move the folder away to start one over). The result files are the
truth, ``status.json`` only tells the story of the last attempt, and the outcome of a diverged one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from flatarch.atomic_files import atomic_write_text

from .lock import describe, is_held, read_holder
from .units import Unit

STATUS_NAME = "status.json"
#: the lock file a worker holds while it runs a unit (no two processes run one unit)
CLAIM_NAME = "unit.lock"

FINISHED, FAILED, DIVERGED, RUNNING, MISSING = "finished", "failed", "diverged", "running", "missing"


@dataclass(frozen=True)
class UnitState:
    state: str
    detail: str = ""


def read_status(folder: str) -> dict[str, Any]:
    try:
        with open(os.path.join(folder, STATUS_NAME)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_status(folder: str, **fields: Any) -> None:
    fields.setdefault("time", time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_text(os.path.join(folder, STATUS_NAME), json.dumps(fields, indent=2) + "\n")


def unit_state(unit: Unit) -> UnitState:
    changed = unit.changed()
    if changed == []:
        return UnitState(FINISHED)
    claim = os.path.join(unit.folder, CLAIM_NAME)
    if is_held(claim):
        return UnitState(RUNNING, f"held by {describe(read_holder(claim))}")
    status = read_status(unit.folder)
    if status.get("state") in (FAILED, DIVERGED):
        return UnitState(status["state"], str(status.get("error", "")))
    if changed:
        return UnitState(MISSING, f"finished with other settings ({'; '.join(changed)})")
    if status.get("state") == RUNNING:
        return UnitState(MISSING, f"interrupted (last attempt: {describe(status)})")
    return UnitState(MISSING)
