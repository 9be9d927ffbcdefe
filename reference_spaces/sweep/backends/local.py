"""``backend = "local"``: the units on this machine, each on its own GPU(s) where it has GPUs.

``gpus`` (``[run]``; default 1 where this machine has GPUs, else 0) is what each unit gets:

* ``0``: ``workers`` processes, one torch thread each, on CPUs: the pool
  (:class:`flatarch.reference_spaces.engine.pool.ProcessPool`) behind ``flatarch search --seeds
  --workers``; with one worker the units run in this process, one after another;
* ``N >= 1`` on a machine with GPUs: the GPUs (those ``CUDA_VISIBLE_DEVICES`` lists, else all) are
  dealt out in groups of ``N``, one group per unit running at once (at most ``workers`` units); each
  unit runs in its own process with ``CUDA_VISIBLE_DEVICES`` set to its group, a search with
  ``N > 1`` as an ``N``-rank search through torchrun (:mod:`..placement`);
* ``1/k`` (``0.5``, ``0.25``, ...) on a machine with GPUs: ``k`` units share each GPU, as Ray's
  fractional GPUs do (a NAS-Bench-201 search keeps a GPU busy only part of the time: its steps are
  bound by the host's work per operator call, docs/performance.md);
* ``N >= 1`` (or a fraction) on a machine without GPUs: the units run on CPUs, said once; with ``N > 1``
  each as an ``N``-rank search on CPU ranks (gloo), ``workers`` units at once.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...engine.pool import ProcessPool
from ..execute import LOG_NAME, execute, one_line
from ..placement import RANK_ENV, launch_command, read_outcome, unit_ranks, visible_gpus
from ..units import Unit
from . import BackendError, Option


class _Inline:
    """A unit run in this process when waited for (one worker: nothing to run it in parallel)."""

    def __init__(self, unit: Unit, cwd: str):
        self.unit, self.cwd = unit, cwd


def run_command(command: list[str], env: dict[str, str], log, running: set) -> int:
    """Run a unit's process with its output in the unit's log; its exit code."""
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    running.add(process)
    try:
        return process.wait()
    finally:
        running.discard(process)


class LocalBackend:
    OPTIONS = {
        "gpus": Option((int, float), "GPUs per unit, each unit its own (CUDA_VISIBLE_DEVICES); N > 1 runs a search "
                       "as an N-rank search through torchrun; 1/k (0.5, 0.25, ...) lets k units share each GPU; 0 "
                       "runs on CPUs (default: 1 where this machine has GPUs, else 0)"),
    }

    def __init__(self, *, root: str, cwd: str, workers: int | None, gpus: float | None):
        if gpus is not None and gpus < 0:
            raise BackendError(f"[run] gpus must be >= 0, got {gpus}")
        if gpus is not None and gpus != int(gpus) and (gpus > 1 or abs(1 / gpus - round(1 / gpus)) > 1e-9):
            raise BackendError(f"[run] gpus must be a whole number of GPUs per unit, or 1/k (0.5, 0.25, ...) for k "
                               f"units sharing each GPU; got {gpus}")
        self.cwd = cwd
        self.workers = workers
        self.gpus = gpus
        self.pool: ProcessPool | None = None
        self.threads: ThreadPoolExecutor | None = None
        self.groups: queue.Queue = queue.Queue()
        self.running: set[subprocess.Popen] = set()

    def start(self) -> None:
        have = visible_gpus()
        gpus = self.gpus if self.gpus is not None else int(bool(have))
        self.gpus = gpus
        if gpus and not have:
            ranks = f" as {gpus} CPU ranks (gloo)" if gpus > 1 else ""
            print(f"flatarch sweep: note: this machine has no GPU; each unit runs on CPUs{ranks}", file=sys.stderr)
        if gpus > len(have) > 0:
            raise BackendError(f"each unit asks for {gpus} GPUs but this machine has {len(have)}; lower gpus in [run]")
        if gpus == 0 or (gpus <= 1 and not have):  # CPU units, one process each: the pool
            if (self.workers or 1) > 1:
                self.pool = ProcessPool(self.workers)
            return
        groups: list[tuple[str, ...] | None] = [None] * (self.workers or 1)  # CPU ranks
        if have and gpus < 1:  # k units share each GPU, taken GPU by GPU in turn
            groups = [(gpu,) for _ in range(round(1 / gpus)) for gpu in have]
        elif have:
            whole = int(gpus)
            groups = [tuple(have[i * whole:(i + 1) * whole]) for i in range(len(have) // whole)]
        groups = groups[:self.workers] if self.workers else groups
        for group in groups:
            self.groups.put(group)
        self.threads = ThreadPoolExecutor(len(groups), thread_name_prefix="flatarch-unit")

    def submit(self, units: Sequence[Unit]) -> list[Any]:
        if self.threads is not None:
            return [self.threads.submit(self._placed, u) for u in units]
        if self.pool is None:
            return [_Inline(u, self.cwd) for u in units]
        try:
            return [self.pool.submit(execute, u, self.cwd) for u in units]
        except BrokenProcessPool:  # a worker died (killed, out of memory): a fresh pool for the rest
            self.pool = ProcessPool(self.workers)
            return [self.pool.submit(execute, u, self.cwd) for u in units]

    def _placed(self, unit: Unit) -> dict[str, Any]:
        """Run ``unit`` in its own process(es) on the next free group of GPUs (``None``: CPU ranks)."""
        group = self.groups.get()
        try:
            env = {k: v for k, v in os.environ.items() if k not in RANK_ENV}
            env["OMP_NUM_THREADS"] = "1"
            if group is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
            os.makedirs(unit.folder, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="flatarch-unit-") as folder:
                unit_file, outcome = os.path.join(folder, "unit.pkl"), os.path.join(folder, "outcome.json")
                with open(unit_file, "wb") as f:
                    pickle.dump(unit, f)
                command = launch_command(unit_ranks(unit, self.gpus), outcome, unit_file, self.cwd)
                with open(os.path.join(unit.folder, LOG_NAME), "a") as log:
                    returncode = run_command(command, env, log, self.running)
                return read_outcome(outcome, returncode)
        finally:
            self.groups.put(group)

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
        if self.threads is not None:
            for future in handles:
                future.cancel()
            for process in list(self.running):  # torchrun passes the signal on to its ranks
                process.terminate()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.threads is not None:
            self.threads.shutdown(wait=True)
            self.threads = None


def _outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except BrokenProcessPool:
        # every unit in flight ends so, not only the one whose worker died: the pool stops them all
        return {"state": "failed", "error": "a worker process died (killed, or out of memory?) and the pool stopped "
                                            "the units it was running"}
    except Exception as exc:
        return {"state": "failed", "error": one_line(exc)}
