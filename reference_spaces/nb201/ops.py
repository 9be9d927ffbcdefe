"""Candidate operations and building blocks of the NAS-Bench-201 search network.

Every op maps ``C`` channels to ``C`` channels at stride 1 (reductions happen in residual
blocks between stages, not inside cells). Convolutions are ReLU -> Conv -> BN; in the search
network BN has no affine parameters (``affine=False``) so that op outputs are comparable and
the alphas alone scale them, as in NAS-Bench-201.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ReLUConvBN, Zero, mix
from .encoding import OPS


class AvgPool(nn.Module):
    """3x3 average pooling, stride 1, padding excluded from the mean (as in NAS-Bench-201)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def make_op(name: str, channels: int, affine: bool = False) -> nn.Module:
    """Build the op called ``name`` (one of :data:`OPS`) on ``channels`` channels."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, affine)
    if name == "avg_pool_3x3":
        return AvgPool()
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; valid ops: {', '.join(OPS)}")


class MixedOp(nn.Module):
    """``sum_o w_o * o(x)`` over the candidate ops of one edge (``w``: the edge's mixing weights)."""

    def __init__(self, channels: int, affine: bool = False):
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, affine) for name in OPS)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return mix(self.ops, weights, x)


class ResidualReduction(nn.Module):
    """The residual block between stages: two 3x3 ReLU-Conv-BN (the first with stride 2) plus a
    shortcut ``Conv1x1(AvgPool2x2(x))``; channels ``c_in -> c_out``, resolution halved. BN is
    affine here (these blocks are fixed, not searched)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
