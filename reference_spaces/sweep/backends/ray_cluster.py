"""``backend = "ray"``: one Ray task per unit, each asking for its GPUs and CPUs.

``gpus = N > 1``: a search runs as ``N`` tasks (one rank each, one GPU each) in a placement group of
``N`` bundles, packed onto as few nodes as fit; a first task in bundle 0 names the rendezvous (its
node's address, a free port), and every rank runs :func:`~..placement.execute_rank` (rank 0
executes the unit). Trainings are one task. Where the cluster has no GPU at all and is this
machine's own instance, the units run on CPUs (said once) instead of being refused.

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
from ..placement import RANK_ENV, execute_rank, unit_ranks
from ..units import Unit
from . import BackendError, Option, missing_library


class RayBackend:
    OPTIONS = {
        "address": Option((str,), "address of a running Ray cluster, e.g. \"auto\" (default: none, a Ray instance "
                          "on this machine)"),
        "gpus": Option((int, float), "GPUs per unit: a search with N > 1 runs as N tasks in a placement group, one "
                       "rank each (default: 1; 0 runs on CPUs, as does this machine's own instance without GPUs)", 1),
        "cpus": Option((int, float), "CPUs per unit (default: 1)", 1),
    }

    def __init__(self, *, root: str, cwd: str, workers: int | None, address: str | None, gpus: float,
                 cpus: float):
        if importlib.util.find_spec("ray") is None:
            raise missing_library("ray", "ray", "ray")
        if gpus < 0 or cpus <= 0:
            raise BackendError(f"[run] gpus must be >= 0 and cpus > 0, got gpus = {gpus}, cpus = {cpus}")
        if gpus > 1 and gpus != int(gpus):
            raise BackendError(f"[run] gpus above 1 is a number of ranks, a whole number; got {gpus}")
        self.cwd, self.workers, self.address, self.gpus, self.cpus = cwd, workers, address, gpus, cpus
        self.task: Any = None
        self.gpu_each = 1.0  # per rank (0: this machine's instance has no GPU)
        self.groups: dict[Any, tuple[Any, list[Any]]] = {}  # rank 0's ref -> (placement group, all ranks' refs)

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
            message = (f"each unit asks for {self.gpus:g} GPU(s) but {where} has {have:g}; set gpus = 0 in [run] "
                       "to run on CPUs")
            if self.address:
                print(f"flatarch sweep: warning: {message}, or start GPU nodes (an autoscaler may add them)",
                      file=sys.stderr)
            elif have:
                ray.shutdown()
                raise BackendError(message)
            else:
                ranks = f" as {self.gpus:g} CPU ranks (gloo)" if self.gpus > 1 else ""
                print(f"flatarch sweep: note: this machine has no GPU; each unit runs on CPUs{ranks}", file=sys.stderr)
                self.gpu_each = 0.0
        one = min(self.gpus, 1) * self.gpu_each
        self.task = ray.remote(execute).options(num_gpus=one, num_cpus=self.cpus)

    def submit(self, units: Sequence[Unit]) -> list[Any]:
        return [self.task.remote(unit, self.cwd) if unit_ranks(unit, int(self.gpus)) == 1 else self._ranks(unit)
                for unit in units]

    def _ranks(self, unit: Unit) -> Any:
        """The ranks of ``unit`` as tasks in a placement group; rank 0's ref stands for the unit."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        world = int(self.gpus)
        bundle = {"CPU": self.cpus, **({"GPU": 1.0} if self.gpu_each else {})}
        group = placement_group([bundle] * world, strategy="PACK")

        def in_bundle(index: int, **resources: Any) -> dict[str, Any]:
            return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
                    **resources}

        address = ray.remote(_rendezvous).options(**in_bundle(0, num_cpus=0)).remote()
        rank = ray.remote(_rank)
        refs = [rank.options(**in_bundle(r, num_cpus=self.cpus, num_gpus=self.gpu_each)).remote(
            unit, self.cwd, r, world, address) for r in range(world)]
        self.groups[refs[0]] = (group, refs)
        return refs[0]

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        import ray

        done, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        outcomes = [(ref, _outcome(ref)) for ref in done]
        for ref in done:
            self._release(ref, wait=True)
        return outcomes

    def _release(self, ref: Any, wait: bool) -> None:
        """Free a multi-rank unit's placement group (after its other ranks, when ``wait``)."""
        import ray
        from ray.util.placement_group import remove_placement_group

        group, refs = self.groups.pop(ref, (None, []))
        if group is None:
            return
        if wait:
            ray.wait(refs, num_returns=len(refs), timeout=60)
        else:
            for other in refs:
                ray.cancel(other, force=True)
        remove_placement_group(group)

    def cancel(self, handles: Sequence[Any]) -> None:
        import ray

        for ref in handles:
            ray.cancel(ref, force=True)
            self._release(ref, wait=False)

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


def _rendezvous() -> tuple[str, int]:
    """Rank 0's node address and a port free there, for torch.distributed's env:// rendezvous."""
    import socket

    import ray

    with socket.socket() as probe:
        probe.bind(("", 0))
        return ray.util.get_node_ip_address(), probe.getsockname()[1]


def _rank(unit: Unit, cwd: str, rank: int, world: int, address: tuple[str, int]) -> dict[str, Any] | None:
    """One rank of a multi-rank unit in a Ray task (Ray shows it its own GPU only: local rank 0)."""
    saved = {k: os.environ.get(k) for k in RANK_ENV}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR=address[0], MASTER_PORT=str(address[1]))
    try:
        return execute_rank(unit, cwd)
    finally:  # Ray reuses its worker processes
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
