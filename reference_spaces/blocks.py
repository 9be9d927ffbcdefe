"""Building blocks both reference spaces use: ReLU-Conv-BN, the ``none`` op, PC-DARTS' partial
channels and channel shuffle, and mixing candidate ops by their weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """``BN(Conv_k(ReLU(x)))`` without a conv bias (DARTS ``operations.py``; NAS-Bench-201's
    ``ReLUConvBN``). ``affine=False`` in search networks, so the mixing weights alone scale an op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output's shape (kept in the graph so its weight gets a gradient)."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (PC-DARTS, so that another ``1/K`` of the channels goes
    through the mixed ops next time)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def partial_channels(x: torch.Tensor, k: int, inner: Callable[[torch.Tensor], torch.Tensor],
                     bypass: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """PC-DARTS (Xu et al. 2020, ``model_search.py`` ``MixedOp``): ``inner`` on the first ``C/K``
    channels, the rest (through ``bypass``, e.g. a max-pool on reduction edges) concatenated after
    it, then a channel shuffle with ``K`` groups."""
    part = x.shape[1] // k
    # contiguous: channel slices of a channels-last tensor crash the CPU backward (torch 2.14)
    active, rest = x[:, :part].contiguous(), x[:, part:].contiguous()
    if bypass is not None:
        rest = bypass(rest)
    return channel_shuffle(torch.cat([inner(active), rest], dim=1), k)


def mix(ops: Sequence[nn.Module], weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_o w_o * op_o(x)``. The ``none`` op is left out: ``w * 0`` adds nothing to the value nor
    to any gradient (``w_none`` still matters through the softmax that made the weights)."""
    terms = [w * op(x) for w, op in zip(weights, ops) if not isinstance(op, Zero)]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out
