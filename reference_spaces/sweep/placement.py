"""Where a unit runs: its GPUs, and its ranks when it asks for several (``gpus = N`` in ``[run]``).

A search unit that asks for ``N > 1`` GPUs runs as one ``N``-rank search (docs/distributed.md):
the local backend launches it with torchrun (``launch_command``), SLURM as one job of ``N`` tasks,
Ray as ``N`` tasks in a placement group. Every rank runs :func:`execute_rank`: rank 0 executes the
unit as a one-process unit is executed (the claim, ``status.json``, the log, the result files);
the other ranks run its search beside it (they read and write nothing). A training (``flatarch
train``) is one process on the first GPU of its unit's.

Units placed on GPUs by the local backend run in their own process (``CUDA_VISIBLE_DEVICES`` must
be set before CUDA starts): ``python -m flatarch.reference_spaces.sweep.placement OUTCOME UNIT CWD``,
the unit pickled in ``UNIT``, rank 0's outcome written to ``OUTCOME`` as JSON.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from .execute import FAILED, execute, one_line
from .units import SearchUnit, Unit

#: the environment variables torchrun sets for a rank (torch.distributed's env:// rendezvous)
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def visible_gpus() -> list[str]:
    """This machine's GPUs as ``CUDA_VISIBLE_DEVICES`` names them (all of them when it is unset)."""
    import torch

    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def unit_ranks(unit: Unit, gpus: float) -> int:
    """How many ranks ``unit`` runs on when each unit has ``gpus`` GPUs: a search one per whole GPU, a
    training one."""
    return max(1, int(gpus)) if isinstance(unit, SearchUnit) else 1


def launch_command(ranks: int, outcome: str, unit_file: str, cwd: str) -> list[str]:
    """The command that runs a unit in its own process(es): ``ranks`` > 1 through torchrun (one
    machine, a free rendezvous port: ``--standalone``)."""
    run = ["-m", "flatarch.reference_spaces.sweep.placement", outcome, unit_file, cwd]
    if ranks == 1:
        return [sys.executable, *run]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *run]


def execute_rank(unit: Unit, cwd: str | None) -> dict[str, Any] | None:
    """One rank of a unit (``RANK`` in the environment; rank 0 without it): rank 0 executes the unit
    and returns its outcome; another rank runs the unit's search with it and returns ``None`` (its own
    failure reaches rank 0, which records it: see the engine's ``ranks.py``)."""
    if int(os.environ.get("RANK", "0")) == 0:
        return execute(unit, cwd)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        unit.run()
    except Exception as exc:  # recorded by rank 0, which stops with this rank's message
        print(f"rank {os.environ['RANK']}: {one_line(exc)}", file=sys.stderr)
    return None


def read_outcome(path: str, returncode: int) -> dict[str, Any]:
    """Rank 0's outcome as the launched process wrote it, or a failure naming the exit code."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"state": FAILED, "error": f"the unit's process ended with exit code {returncode} before reporting "
                                          "an outcome"}


def main(argv: Sequence[str] | None = None) -> int:
    outcome_path, unit_file, cwd = argv if argv is not None else sys.argv[1:]
    with open(unit_file, "rb") as f:
        unit = pickle.load(f)
    outcome = execute_rank(unit, cwd)
    if outcome is not None:
        with open(outcome_path, "w") as f:
            json.dump(outcome, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
