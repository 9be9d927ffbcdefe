"""Sweeps: grids of searches (spaces x methods x updates x seeds) and the trainings of their
genotypes, run on the engines researchers already use, resumable per run, aggregated into the
layout of the paper's table 2 (imported as ``flatarch.reference_spaces.sweep``).

Python API::

    from flatarch.reference_spaces.engine import SearchConfig
    from flatarch.reference_spaces.sweep import SweepPlan, plan_runs, run_sweep, build_tables, markdown

    configs = [SearchConfig(space="nb201", method=m, optimizer=u, seed=s, dataset="cifar10", data_dir="data")
               for m in ("darts", "pcdarts") for u in ("first-order", "a2m") for s in (1, 2, 3, 4, 5)]
    plan = SweepPlan(root="runs/table2", runs=plan_runs("runs/table2", configs), backend="local", workers=4)
    run_sweep(plan)                            # again after an interruption: only what is missing
    print(markdown(build_tables(plan.runs)))

``flatarch sweep FILE`` reads the same from a TOML file. Modules: :mod:`.units` (a search, a
training), :mod:`.plan` (runs and their folders), :mod:`.status` (where a unit stands),
:mod:`.execute` (what a worker does), :mod:`.lock` (one sweep per root, one process per unit),
:mod:`.backends` (local, slurm, ray), :mod:`.driver` (the sweep), :mod:`.report` (table 2).
"""

from .backends import BACKENDS, BackendError, make_backend
from .driver import LOCK_NAME, run_sweep, states
from .lock import LockError
from .plan import AXES, GRID_KEYS, TRAIN_AXIS, TRAINABLE_SPACES, Run, SweepError, SweepPlan, plan_runs, run_key
from .report import Table, build_tables, csv_text, markdown, write_report
from .units import SearchUnit, TrainSpec, TrainUnit

__all__ = [
    "AXES",
    "BACKENDS",
    "GRID_KEYS",
    "LOCK_NAME",
    "TRAINABLE_SPACES",
    "TRAIN_AXIS",
    "BackendError",
    "LockError",
    "Run",
    "SearchUnit",
    "SweepError",
    "SweepPlan",
    "Table",
    "TrainSpec",
    "TrainUnit",
    "build_tables",
    "csv_text",
    "make_backend",
    "markdown",
    "plan_runs",
    "run_key",
    "run_sweep",
    "states",
    "write_report",
]
