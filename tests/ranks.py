"""Run a function on several CPU ranks joined in a gloo process group, for the data-parallel tests.

``on_ranks(fn, world, *args)`` spawns ``world`` processes (one torch thread each), initialises
``torch.distributed`` with the gloo backend over a file store, calls ``fn(*args)`` on every rank
and returns each rank's return value, rank order. Spawning and importing torch costs seconds, so
a test runs many cases in one call (``fn`` loops over them) rather than one spawn per case.
``fn`` must be a module-level function of an importable module (tests/ is on the children's path).
A rank that ends its process with exit code 0 inside ``fn`` (``os._exit(0)``: a rank that dies, in a
test that the other ranks survive it) returns ``None``.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
import torch.multiprocessing as mp


def _child(rank: int, world: int, store: str, results: str, fn, args) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.save(fn(*args), os.path.join(results, f"rank-{rank}.pt"))
    finally:
        if dist.is_initialized():  # a failed search destroys its group
            dist.destroy_process_group()


def on_ranks(fn, world: int, *args, timeout: float = 600.0):
    """``[fn(*args) on rank 0, on rank 1, ...]``; an exception on a rank is raised here, and so is a
    ``TimeoutError`` when the ranks have not all finished after ``timeout`` seconds (a hang)."""
    with tempfile.TemporaryDirectory() as folder:
        store = os.path.join(folder, "store")
        context = mp.start_processes(_child, args=(world, store, folder, fn, args), nprocs=world, join=False,
                                     start_method="spawn")
        deadline = time.monotonic() + timeout
        while not context.join(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                for process in context.processes:
                    process.kill()
                raise TimeoutError(f"the {world} ranks did not finish within {timeout} s")
        paths = [os.path.join(folder, f"rank-{r}.pt") for r in range(world)]
        return [torch.load(path, weights_only=False) if os.path.exists(path) else None for path in paths]
