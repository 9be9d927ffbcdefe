"""Candidate operations and building blocks of the NAS-Bench-201 search network.

Every op maps ``C`` channels to ``C`` channels at stride 1 (reductions happen in residual
blocks between stages, not inside cells). Convolutions are ReLU -> Conv -> BN; in the search
network BN has no affine parameters (``affine=False``) so that op outputs are comparable and
the alphas alone scale them, as in NAS-Bench-201.

:class:`OutgoingEdges` runs the candidate ops of *all* edges leaving one node at once. A search
pass of the supernet is thousands of small operator calls, and on a GPU each call costs the host
more than the device (docs/performance.md): the ops of the edges that read the same node share
their ReLU and pooling, their convolutions concatenate along the output channels, one BatchNorm
normalises them all (it is per channel, so this is the same function), and one matrix product
mixes every edge's ops by its weights (:func:`~flatarch.reference_spaces.blocks.mix_stack`). The
supernet then makes half the calls per pass (``benchmarks/grouped_edges.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..blocks import ReLUConvBN, mix_stack, mixing_index
from .encoding import OPS


class AvgPool(nn.Module):
    """3x3 average pooling, stride 1, padding excluded from the mean (as in NAS-Bench-201)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class OutgoingEdges(nn.Module):
    """The mixed ops of the edges that read one node: edge ``e`` computes ``sum_o w[e, o] * o(x)``
    over :data:`OPS`, with its own convolution weights.

    Args:
        channels: ``C``.
        edges: the cell's indices of these edges (rows of the cell's ``[6, len(OPS)]`` weights).

    ``forward(x, flat)`` takes the cell's weights as :func:`~flatarch.reference_spaces.blocks.flat_weights`
    gives them and returns ``[N, m, C, H, W]``, one slice per edge in the order given. Parameters:
    ``conv3.weight`` ``[m*C, C, 3, 3]`` and ``conv1.weight`` ``[m*C, C, 1, 1]``, the ``k``-th
    edge's kernels at rows ``k*C:(k+1)*C``; ``bn`` over the ``2*m*C`` channels of both.
    """

    def __init__(self, channels: int, edges: Sequence[int], affine: bool = False):
        super().__init__()
        c, m = channels, len(edges)
        self.m = m
        self.relu = nn.ReLU(inplace=False)
        self.conv3 = nn.Conv2d(c, m * c, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(c, m * c, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * m * c, affine=affine)
        self.pool = AvgPool()
        index = mixing_index(edges, OPS, ("skip_connect", "avg_pool_3x3"), ("nor_conv_3x3", "nor_conv_1x1"))
        self.register_buffer("mixing_index", index, persistent=False)

    def forward(self, x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        r = self.relu(x)
        convs = self.bn(torch.cat([self.conv3(r), self.conv1(r)], dim=1)).unflatten(1, (2 * self.m, -1))
        stack = torch.cat([x.unsqueeze(1), self.pool(x).unsqueeze(1), convs], dim=1)
        return mix_stack(stack, flat, self.mixing_index)


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
