"""``backend = "slurm"``: SLURM job arrays through submitit, one GPU per unit by default.

``gpus = N`` gives each search ``N`` GPUs as one job of ``N`` tasks on one node, one rank each:
submitit's ``TorchDistributedEnvironment`` sets the ranks' rendezvous (the job's first node, a
port drawn from the job id) and each task runs :func:`~..placement.execute_rank` (rank 0 executes
the unit, the others run its search beside it). Trainings are one task on one GPU. More nodes per
search: ``submitit = {nodes = M}`` (``M`` nodes of ``N`` tasks each).

Every submission is one job array (``executor.batch()``); ``workers`` caps how many of its
tasks run at once (``--array=...%workers``). The job's callable follows submitit's checkpoint
protocol: when SLURM preempts a job or its time runs out, submitit calls ``checkpoint`` and
requeues the job with the same unit, which then continues from the unit's own checkpoint
(``checkpoint.pt``, written every epoch), as ``--resume`` does. ``cluster = "local"`` runs the
same jobs through submitit's local executor on this machine (every job at once): a check of a
sweep file before submitting it.

Submitit's files (pickled jobs, each job's stdout and stderr) go to ``ROOT/.submitit/``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from typing import Any

from ..execute import one_line
from ..placement import execute_rank, unit_ranks
from ..units import Unit
from . import BackendError, Option, missing_library

FOLDER = ".submitit"
#: seconds between looks at the jobs' states (submitit itself rate-limits its sacct calls)
POLL_S = {"slurm": 30.0, "local": 0.5}


class Job:
    """The callable of a job (each of its tasks): runs one unit, or one rank of it. ``checkpoint`` is
    submitit's requeue hook."""

    def __call__(self, unit: Unit, cwd: str) -> dict[str, Any] | None:
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:  # RANK, WORLD_SIZE, MASTER_ADDR, ... for torch.distributed
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return execute_rank(unit, cwd)

    def checkpoint(self, unit: Unit, cwd: str) -> Any:
        from submitit.helpers import DelayedSubmission

        # nothing to save here: the unit checkpoints every epoch and resumes from it when requeued
        return DelayedSubmission(self, unit, cwd)


class SlurmBackend:
    OPTIONS = {
        "time": Option((int,), "time limit of each job in minutes (required); a job cut off resumes when requeued"),
        "partition": Option((str,), "SLURM partition (default: the cluster's)"),
        "account": Option((str,), "SLURM account to charge (default: yours)"),
        "gpus": Option((int,), "GPUs per unit: a search with N > 1 runs as one job of N tasks, one rank each; 0 runs "
                       "on CPUs (default: 1)", 1),
        "cpus": Option((int,), "CPU cores per job, for data loading (default: 4)", 4),
        "mem_gb": Option((int, float), "memory per job in GB (default: the partition's)"),
        "cluster": Option((str,), "slurm, or local: the same jobs on this machine (default: slurm)", "slurm"),
        "submitit": Option((dict,), "further submitit AutoExecutor parameters, e.g. {slurm_qos = \"high\"}", {}),
    }

    def __init__(self, *, root: str, cwd: str, workers: int | None, time: int | None, partition: str | None,
                 account: str | None, gpus: int, cpus: int, mem_gb: float | None, cluster: str,
                 submitit: dict[str, Any]):
        if importlib.util.find_spec("submitit") is None:
            raise missing_library("slurm", "submitit", "slurm")
        if time is None or time < 1:
            raise BackendError("backend slurm needs time = MINUTES in [run] (each job's time limit)")
        if cluster not in POLL_S:
            raise BackendError(f"[run] cluster must be one of {', '.join(POLL_S)}, got {cluster!r}")
        if gpus < 0:
            raise BackendError(f"[run] gpus must be >= 0, got {gpus}")
        self.root, self.cwd, self.cluster, self.gpus = root, cwd, cluster, gpus
        self.parameters: dict[str, Any] = {
            "name": "flatarch-sweep", "timeout_min": time, "cpus_per_task": cpus,
            "mem_gb": mem_gb, "slurm_partition": partition, "slurm_account": account,
            "slurm_array_parallelism": workers, **submitit,
        }
        self.executor: Any = None

    def start(self) -> None:
        try:
            import submitit
        except ImportError:
            raise missing_library("slurm", "submitit", "slurm") from None
        self.executor = submitit.AutoExecutor(folder=os.path.join(self.root, FOLDER), cluster=self.cluster)
        try:
            self.executor.update_parameters(**{k: v for k, v in self.parameters.items() if v is not None})
        except (NameError, AssertionError, ValueError) as exc:  # submitit's ways of refusing a parameter
            raise BackendError(f"[run] submitit refused a parameter: {' '.join(str(exc).split())[:300]}") from None

    def submit(self, units: Sequence[Unit]) -> list[Any]:
        """One job array per number of ranks (searches of ``gpus`` ranks, trainings of one)."""
        job, jobs = Job(), {}
        for ranks in sorted({unit_ranks(u, self.gpus) for u in units}):
            self.executor.update_parameters(tasks_per_node=ranks, gpus_per_node=ranks if self.gpus else 0)
            same = [u for u in units if unit_ranks(u, self.gpus) == ranks]
            with self.executor.batch():
                submitted = [self.executor.submit(job, unit, self.cwd) for unit in same]
            jobs.update(zip(map(id, same), submitted))
        return [jobs[id(u)] for u in units]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [j for j in handles if j.done()]
            if done or time.monotonic() >= deadline:
                return [(j, _outcome(j)) for j in done]
            time.sleep(min(POLL_S[self.cluster], max(0.0, deadline - time.monotonic())))

    def cancel(self, handles: Sequence[Any]) -> None:
        for job in handles:
            job.cancel(check=False)

    def close(self) -> None:
        self.executor = None


def _outcome(job: Any) -> dict[str, Any]:
    try:
        return job.results()[0]  # rank 0's outcome (the other ranks return None)
    except Exception as exc:  # the job died outside the unit (node failure, out of memory, cancelled)
        return {"state": "failed", "error": f"job {job.job_id}: {one_line(exc)[:300]} (log: {job.paths.stderr})"}
