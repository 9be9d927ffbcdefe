"""Data-parallel reductions: one search step over the ranks of a process group.

With data parallelism each rank evaluates the loss on its own shard of the batch. When

* each rank's loss is the **mean over its local shard**, and
* the shards have **equal sizes**,

the global batch's mean loss is the mean of the local losses, and its gradient the mean of the
local gradients::

    L(alpha) = 1/N sum_r L_r(alpha),    g(alpha) = 1/N sum_r g_r(alpha)

An architecture update must take every evaluation point from the *global* gradient: A2M's
``alpha_t = alpha + rho g(alpha)`` and ``alpha_t +- eps g(alpha_t)`` built from a rank's own
``g_r`` are other points on every rank, and the mean of the four per-rank directions is another
algorithm. So every gradient evaluation of an update is reduced (:func:`mean_across_ranks`)
before the next point is built from it; every rank then computes the same points, the same
direction and the same step, bit for bit (an all-reduce hands every rank the same sum).

* :func:`mean_across_ranks` -- the mean over the ranks of a list of tensors, one all-reduce per
  device and dtype (a flat copy of them all);
* :func:`reducer` -- the ``process_group=`` / ``grad_reduce=`` keywords every update, the
  Hessian measurements, :func:`flatarch.regularizers.lambda_correction` and
  :func:`flatarch.smoothing.adversarial_smoothing` take, resolved to one callable (or ``None``);
* :func:`sum_across_ranks` -- a differentiable sum over the ranks (its backward is the same sum,
  so it differentiates twice and works under ``torch.func.vmap``), the building block of
  :mod:`flatarch.sync_batch_norm`.

Without an initialised process group nothing here is ever called: single-device code pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

#: ``grad_reduce(tensors) -> tensors``: the mean over the data-parallel ranks of each tensor
GradReduce = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]


def world_size(group: Any = None) -> int:
    """The ranks in ``group`` (the default group when ``None``); 1 without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def rank(group: Any = None) -> int:
    """This process's rank in ``group``; 0 without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank(group)


def mean_across_ranks(tensors: Sequence[torch.Tensor], group: Any = None) -> tuple[torch.Tensor, ...]:
    """The elementwise mean over the ranks of ``group`` of each tensor, new tensors (detached).

    One all-reduce (sum) per device and dtype over a flat copy of all the tensors, then a division
    by the world size (gloo has no average). Every rank gets the same bits.
    """
    tensors = [t.detach() for t in tensors]
    size = world_size(group)
    if size == 1 or not tensors:
        return tuple(tensors)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    for members in groups.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in members])
        dist.all_reduce(flat, group=group)
        flat.div_(size)
        for i, piece in zip(members, flat.split([tensors[i].numel() for i in members])):
            out[i] = piece.view(tensors[i].shape)
    return tuple(out)  # type: ignore[arg-type]


def reducer(process_group: Any = None, grad_reduce: GradReduce | None = None) -> GradReduce | None:
    """The gradient reduction of an update: ``grad_reduce`` as given, the mean over
    ``process_group`` (e.g. ``torch.distributed.group.WORLD``), or ``None`` (one device)."""
    if process_group is not None and grad_reduce is not None:
        raise ValueError("give process_group= (the mean over its ranks) or grad_reduce= (your own reduction), "
                         "not both")
    if grad_reduce is not None:
        if not callable(grad_reduce):
            raise TypeError(f"grad_reduce must be callable (tensors -> their means over the ranks), got "
                            f"{type(grad_reduce).__name__}")
        return grad_reduce
    if process_group is None:
        return None
    if not dist.is_initialized():
        raise ValueError("process_group= was given but torch.distributed is not initialised; call "
                         "torch.distributed.init_process_group first (torchrun does it for you)")
    return lambda tensors: mean_across_ranks(tensors, process_group)


def reduce_with(reduce: GradReduce | None, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``reduce(tensors)``, checked to return as many tensors of the same shapes; ``tensors``
    unchanged when ``reduce`` is ``None``."""
    tensors = tuple(tensors)
    if reduce is None:
        return tensors
    out = tuple(reduce(tensors))
    if len(out) != len(tensors) or any(o.shape != t.shape for o, t in zip(out, tensors)):
        raise ValueError("grad_reduce must return one tensor of the same shape for each tensor it is given")
    return out


class _SumAcrossRanks(torch.autograd.Function):
    """``sum_r x_r``; its gradient with respect to ``x_r`` is the sum of the ranks' incoming
    gradients, the same function again (so it differentiates twice)."""

    @staticmethod
    def forward(x: torch.Tensor, group: Any) -> torch.Tensor:
        out = x.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.group = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _SumAcrossRanks.apply(grad, ctx.group), None

    @staticmethod
    def vmap(info, in_dims, x, group):
        # the batched tensor is summed whole: one all-reduce for all the vmapped points
        return _SumAcrossRanks.apply(x, group), in_dims[0]


def sum_across_ranks(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """The elementwise sum of ``x`` over the ranks of ``group``, differentiable (twice, and under
    ``torch.func`` transforms); ``x`` itself when there is one rank."""
    if world_size(group) == 1:
        return x
    return _SumAcrossRanks.apply(x, group)


__all__ = ["GradReduce", "mean_across_ranks", "rank", "reduce_with", "reducer", "sum_across_ranks", "world_size"]
