"""The ranks of one data-parallel search: which shard each computes, what is reduced, who writes.

A search runs on ``N`` ranks when ``torch.distributed`` is initialised (by the caller, or here
from torchrun's environment: ``torchrun --nproc_per_node=N -m flatarch search ...``). The global
batch stays ``--batch-size``; every rank draws the epoch's whole batch plan and keeps its own
``1/N`` of each batch (the batch streams' ``shard``), so the ranks together see exactly the one-device
batches. What keeps the ranks one search (docs/distributed.md):

* every gradient evaluation of the architecture update, the Hessian-vector products, lambda-DARTS'
  and SDARTS-ADV's gradients are means over the ranks (:attr:`Ranks.reduce`, the core's
  ``grad_reduce``);
* the weight gradients are averaged in one all-reduce per step (:meth:`Ranks.average_grads`);
* loss and accuracy sums are summed over the ranks (:meth:`Ranks.sum`);
* the network starts from rank 0's parameters and buffers, and without ``--sync-bn`` the
  BatchNorm running statistics are rank 0's after each epoch's training (DDP's
  ``broadcast_buffers``), so every rank validates with the same network and the checkpoint holds
  the state of every rank;
* rank 0 alone reads and writes the run folder (:meth:`Ranks.from_writer` hands its checkpoint, or
  its refusal, to every rank) and prints: the other ranks' output is silenced for the search
  (:func:`joined`), their errors are not;
* a failure on one rank ends every rank (:meth:`Ranks.failed`): the failing rank leaves its one-line
  message in the process group's store and destroys its group, so the others' pending collectives
  fail at once (instead of waiting for the backend's timeout) and they stop with that message; a
  rank that dies without a word (killed, out of memory) leaves the others a failed collective, which
  they report in one line as such.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from flatarch import distributed
from flatarch.distributed import GradReduce, mean_across_ranks, reducer

from ..errors import DIVERGENCES, UsageError
from .config import SearchError

T = TypeVar("T")
FAILURE_KEY = "flatarch/failure"
#: what a rank stops with when a collective fails and no rank has said why
LOST = ("another rank stopped without a message (killed, out of memory or crashed; the launcher, e.g. torchrun, "
        "says which)")
#: failures every rank meets at the same point, as they are decided on values all ranks share (the
#: reduced losses and gradients, the weights): the divergences; the group stays usable, e.g. for
#: the next seed
COLLECTIVE_ERRORS = DIVERGENCES


class PeerFailed(SearchError):
    """Another rank of the search failed; the message is its own."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the search: its ``rank`` among ``world`` ranks of ``group``."""

    rank: int = 0
    world: int = 1
    group: Any = None

    @classmethod
    def current(cls) -> Ranks:
        world = distributed.world_size()
        return cls() if world == 1 else cls(distributed.rank(), world, dist.group.WORLD)

    @property
    def writer(self) -> bool:
        """Rank 0: the one that reads and writes the run folder and prints."""
        return self.rank == 0

    @property
    def reduce(self) -> GradReduce | None:
        """The core's ``grad_reduce``: the mean over the ranks (``None`` on one rank)."""
        return None if self.world == 1 else reducer(process_group=self.group)

    def check_batch(self, batch_size: int, split: str | None = None) -> None:
        """``--batch-size``, or with ``split`` the batch of a split smaller than it (all its images), must
        split evenly over the ranks: each rank's loss is the mean over an equal shard."""
        if not batch_size % self.world:
            return
        if split is None:
            raise SearchError(f"--batch-size {batch_size} is the global batch; it must split evenly over the "
                              f"{self.world} ranks (each rank's loss is the mean over an equal shard); choose a "
                              f"multiple of {self.world}")
        raise SearchError(f"the {split} split holds {batch_size} images, fewer than --batch-size, so each of its "
                          f"batches is all of them, and {batch_size} images do not split evenly over the {self.world} "
                          f"ranks; give more images (--subset) or a smaller --batch-size, a multiple of {self.world}")

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place."""
        if self.world > 1:
            dist.all_reduce(tensor, group=self.group)
        return tensor

    def average_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Each ``.grad`` replaced by its mean over the ranks (one all-reduce per dtype; the parameters
        without a gradient are the same on every rank and are left out)."""
        if self.world == 1:
            return
        with_grad = [p for p in params if p.grad is not None]
        for p, mean in zip(with_grad, mean_across_ranks([p.grad for p in with_grad], self.group)):
            p.grad.copy_(mean)

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every rank, in place."""
        if self.world == 1:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t, 0, group=self.group)

    def from_writer(self, read: Callable[[], T]) -> T:
        """``read()`` run on rank 0 alone (it reads the run folder), its result handed to every rank;
        a :class:`UsageError` it raises is raised on every rank, with its message."""
        if self.world == 1:
            return read()
        box: list[Any] = [None]
        if self.writer:
            try:
                box[0] = (True, read())
            except UsageError as exc:
                box[0] = (False, (type(exc), str(exc)))
        dist.broadcast_object_list(box, 0, group=self.group)
        ok, value = box[0]
        if not ok:
            kind, message = value
            raise kind(message)
        return value

    def failed(self, exc: BaseException) -> BaseException:
        """The error this rank stops with, after making sure every other rank stops too: its own
        (posted to the others, its group destroyed), or a :class:`PeerFailed` carrying the message of
        the rank that failed first, when this rank only met that failure in a collective; a collective
        that failed with no message posted is a :class:`PeerFailed` too (:data:`LOST`), posted in turn."""
        if self.world == 1 or isinstance(exc, (KeyboardInterrupt, *COLLECTIVE_ERRORS)):
            return exc
        store = _store()
        posted = _read(store)
        if posted is not None and not isinstance(exc, UsageError):
            return PeerFailed(posted)
        stop, message = exc, f"rank {self.rank}: {_one_line(exc)}"
        if _from_collective(exc):  # and no message posted: a rank left without one; the others are told too
            stop = PeerFailed(f"rank {self.rank}: {LOST}; the backend said: {_backend_said(exc)}")
            message = str(stop)
        with contextlib.suppress(Exception):  # the first failure's message stays
            store.compare_set(FAILURE_KEY, "", message)
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        return stop


def _store():
    # the default group's key-value store (torch has no public accessor): where a failing rank
    # leaves its message for the others
    with contextlib.suppress(Exception):
        return dist.distributed_c10d._get_default_store()
    return None


def _read(store) -> str | None:
    if store is None:
        return None
    with contextlib.suppress(Exception):
        if store.check([FAILURE_KEY]):
            return store.get(FAILURE_KEY).decode()
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _from_collective(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside ``torch.distributed`` (a collective, the store): the innermost
    frame of its traceback is there."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.join("torch", "distributed", "") in tb.tb_frame.f_code.co_filename


def _backend_said(exc: BaseException) -> str:
    """The backend's error in a few words: its first sentence, without gloo's ``[file:line]`` prefix."""
    return re.sub(r"^\[[^\]]*\]\s*", "", _one_line(exc)).split(". ")[0]


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[Ranks]:
    """The ranks of this search: the initialised process group, or one initialised here from
    torchrun's environment (``WORLD_SIZE`` > 1; gloo on CPUs, NCCL on GPUs, each rank on the GPU of its
    ``LOCAL_RANK``) and destroyed at the end. A failure on a rank ends every rank (:meth:`Ranks.failed`)."""
    created = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    ranks = Ranks.current()
    try:
        with _silenced(not ranks.writer):
            yield ranks
    except BaseException as exc:
        stop = ranks.failed(exc)
        if stop is exc:
            raise
        raise stop from None
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """stdout and stderr discarded while ``quiet`` (rank 0 alone prints a search's lines)."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        yield


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """A rank's CUDA device is the current one (torchrun: its ``LOCAL_RANK``), not ``cuda:0`` for all."""
    if ranks.world > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


__all__ = ["PeerFailed", "Ranks", "joined", "rank_device"]
