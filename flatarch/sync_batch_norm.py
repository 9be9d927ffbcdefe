"""BatchNorm over the global batch of a data-parallel step, on any device and backend.

In training mode a BatchNorm layer normalises by its batch's statistics, so N ranks that each
hold a shard of the batch compute another function than one device holding all of it. Here the
statistics are those of the union of the shards (Chan et al.'s pairwise combination of the
ranks' counts, means and sums of squared deviations)::

    n = sum_r n_r,   mean = sum_r n_r m_r / n,   var = sum_r (M2_r + n_r (m_r - mean)^2) / n

and the running statistics move with them (``running_var`` by the unbiased ``n / (n - 1) var``,
as ``torch.nn.BatchNorm``), so every rank keeps the same buffers.

``torch.nn.SyncBatchNorm`` does this for CUDA tensors only; its backward cannot be differentiated
again (``hessian="exact"``, :mod:`flatarch.sharpness`) and it does not run under
``torch.func.vmap`` (A2M's ``batch_pair``). :class:`GlobalBatchNorm` builds the same statistics
from differentiable sums over the ranks (:func:`flatarch.distributed.sum_across_ranks`): one
all-reduce of ``N (2C + 1)`` numbers per layer and pass (one more in its backward), on CPUs (gloo)
and GPUs (NCCL) alike.
Ranks may hold shards of different sizes (a sweep's last batch), an empty one too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import rank, sum_across_ranks, world_size


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm (any of 1d/2d/3d: the statistics are per channel, dimension 1) whose training-mode
    statistics are those of the batch over all ranks of ``process_group`` (the default group when
    ``None``). In eval mode, and with one rank, it is ``torch.nn.BatchNorm`` exactly."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (batch, channels, ...), got {input.dim()}D input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uses_batch = self.training or self.running_mean is None
        if not uses_batch or world_size(self.process_group) == 1:
            return super().forward(x)
        self._check_input_dim(x)
        mean, var, count = _global_moments(x, self.process_group)
        if self.training and self.track_running_stats:
            self._track(mean, var, count)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(var + self.eps).view(shape).to(x.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as torch's BatchNorm
                factor = 1.0 / self.num_batches_tracked.to(mean.dtype)
            else:
                factor = self.momentum
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def _global_moments(x: torch.Tensor, group: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of ``x`` over the batch of all ranks, and its size;
    differentiable in ``x`` (each rank's contribution reaches it through the sum's backward)."""
    dims = [0, *range(2, x.dim())]
    channels = x.shape[1]
    stats_dtype = torch.promote_types(x.dtype, torch.float32)
    xs = x.to(stats_dtype)
    count = x.new_full((1,), x.numel() // max(channels, 1), dtype=stats_dtype)
    local_mean = xs.sum(dims) / count.clamp_min(1)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    local_m2 = (xs - local_mean.view(shape)).pow(2).sum(dims)
    row = torch.cat([count, local_mean, local_m2])
    size = world_size(group)
    # an all-gather as a sum: each rank fills its own row of a zero table
    table = sum_across_ranks(F.pad(row[None], (0, 0, rank(group), size - 1 - rank(group))), group)
    counts, means, m2s = table[:, :1], table[:, 1:channels + 1], table[:, channels + 1:]
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    var = (m2s + counts * (means - mean).pow(2)).sum(0) / total
    return mean, var, total


def convert_global_batch_norm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """``module`` with every BatchNorm layer (``nn.BatchNorm1d/2d/3d``, also inside it) replaced by a
    :class:`GlobalBatchNorm` holding the same parameters and buffers (the same tensors), in place where
    possible; returns the module (a new one when ``module`` itself is a BatchNorm layer).
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``'s counterpart."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats, process_group)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        new = convert_global_batch_norm(child, process_group)
        if new is not child:
            setattr(module, name, new)
    return module


__all__ = ["GlobalBatchNorm", "convert_global_batch_norm"]
