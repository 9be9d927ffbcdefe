"""``backend = "ray"``: one Ray task per unit, each asking for its GPUs and CPUs.

With ``address`` the sweep joins an existing cluster (``ray.init(address=...)``, e.g. ``"auto"``
on a cluster node or ``"ray://head:10001"``); its nodes need flatarch installed and the sweep's
root on a shared file system. Without it, a Ray instance on this machine with ``workers`` CPUs.
Ray retries a task whose worker died (a lost node); the retry continues from the unit's
checkpoint. ``workers`` caps how many tasks are submitted at once (default: all; Ray queues them
by their resources).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..execute import execute, one_line
from ..units import Unit
from . import BackendError, Option, missing_library


class RayBackend:
    OPTIONS = {
        "address": Option((str,), "address of a running Ray cluster, e.g. \"auto\" (default: none, a Ray instance "
                          "on this machine)"),
        "gpus": Option((int, float), "GPUs per unit (default: 1; 0 runs on CPUs)", 1),
        "cpus": Option((int, float), "CPUs per unit (default: 1)", 1),
    }

    def __init__(self, *, root: str, cwd: str, workers: int | None, address: str | None, gpus: float,
                 cpus: float):
        if importlib.util.find_spec("ray") is None:
            raise missing_library("ray", "ray", "ray")
        if gpus < 0 or cpus <= 0:
            raise BackendError(f"[run] gpus must be >= 0 and cpus > 0, got gpus = {gpus}, cpus = {cpus}")
        self.cwd, self.workers, self.address, self.gpus, self.cpus = cwd, workers, address, gpus, cpus
        self.task: Any = None

    def start(self) -> None:
        import ray

        if self.address:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers or os.cpu_count(), include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        have = ray.cluster_resources().get("GPU", 0)
        if self.gpus > have:
            where = f"the Ray cluster at {self.address}" if self.address else "this machine"
            message = (f"each unit asks for {self.gpus} GPU(s) but {where} has {have:g}; set gpus = 0 in [run] "
                       "to run on CPUs")
            if not self.address:
                ray.shutdown()
                raise BackendError(message)
            print(f"flatarch sweep: warning: {message}, or start GPU nodes (an autoscaler may add them)",
                  file=sys.stderr)
        self.task = ray.remote(execute).options(num_gpus=self.gpus, num_cpus=self.cpus)

    def submit(self, units: Sequence[Unit]) -> list[Any]:
        return [self.task.remote(unit, self.cwd) for unit in units]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        import ray

        done, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        return [(ref, _outcome(ref)) for ref in done]

    def cancel(self, handles: Sequence[Any]) -> None:
        import ray

        for ref in handles:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def _outcome(ref: Any) -> dict[str, Any]:
    import ray

    try:
        return ray.get(ref)
    except Exception as exc:  # the task died outside the unit (worker killed, node lost, cancelled)
        return {"state": "failed", "error": one_line(exc)[:300]}
