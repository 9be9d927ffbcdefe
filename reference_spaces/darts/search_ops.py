"""The mixed ops of the DARTS search cell, run for all edges that read one node at once.

A search pass is thousands of small operator calls, and on a GPU each costs the host more than
the device (docs/performance.md). The edges that read the same node share their input, so
:class:`OutgoingEdges` computes what they share once and batches the rest:

* the pools (and the non-affine BatchNorm DARTS puts after them) have no parameters: their output
  is the same on every edge, computed once;
* every convolution op starts with ``ReLU(x)``: computed once, repeated per edge, and each stage of
  the separable and dilated convolutions of all edges is one grouped convolution (depthwise: one
  group per channel and edge; pointwise: one group per op and edge), one BatchNorm per stage;
* the stride-2 ``skip_connect`` (a FactorizedReduce per edge) is one FactorizedReduce with a copy
  per edge;
* one batched matrix product mixes the stacked outputs by each edge's weights
  (:func:`~flatarch.reference_spaces.blocks.mix_stack`).

BatchNorm is per channel and every group keeps its edge's own channels, so this is the function of
DARTS' per-edge ``MixedOp`` (``model_search.py``), with about a third of the calls per pass
(``benchmarks/grouped_edges.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..blocks import mix_stack, mixing_index, partial_channels
from .ops import CONVOLUTIONS, FactorizedReduce

POOLS = {"max_pool_3x3": "max", "avg_pool_3x3": "avg"}


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


class GroupedConvolutions(nn.Module):
    """The separable and dilated convolution ops ``names`` of ``m`` edges on one input.

    Stage 1 (every op): depthwise ``k x k`` (stride, dilation of the op) -> pointwise 1x1 -> BN;
    stage 2 (separable ops only): ReLU -> depthwise ``k x k`` -> pointwise -> BN (DARTS ``SepConv``
    is two ``DilConv`` with dilation 1, the first carrying the stride). Returns
    ``[N, len(names) * m, C, H', W']``, op-major (all edges of the first op, then the next)."""

    def __init__(self, c: int, stride: int, edges: int, names: Sequence[str]):
        super().__init__()
        self.c, self.m = c, edges
        self.names = tuple(names)
        self.separable = tuple(n for n in self.names if CONVOLUTIONS[n][0])
        width = edges * c

        def depthwise(name: str, stride: int) -> nn.Conv2d:
            _, kernel, padding, dilation = CONVOLUTIONS[name]
            return nn.Conv2d(width, width, kernel, stride=stride, padding=padding, dilation=dilation,
                             groups=width, bias=False)

        self.relu = nn.ReLU(inplace=False)
        self.depthwise_1 = nn.ModuleList(depthwise(n, stride) for n in self.names)
        self.pointwise_1 = nn.Conv2d(len(self.names) * width, len(self.names) * width, 1,
                                     groups=len(self.names) * edges, bias=False)
        self.bn_1 = nn.BatchNorm2d(len(self.names) * width, affine=False)
        if self.separable:
            self.depthwise_2 = nn.ModuleList(depthwise(n, 1) for n in self.separable)
            self.pointwise_2 = nn.Conv2d(len(self.separable) * width, len(self.separable) * width, 1,
                                         groups=len(self.separable) * edges, bias=False)
            self.bn_2 = nn.BatchNorm2d(len(self.separable) * width, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.relu(x).repeat(1, self.m, 1, 1)  # edge-major: edge k reads channels k*C:(k+1)*C
        first = self.bn_1(self.pointwise_1(torch.cat([conv(r) for conv in self.depthwise_1], dim=1)))
        if not self.separable:
            return first.unflatten(1, (len(self.names) * self.m, -1))
        width = self.m * self.c
        # split, not slicing: one backward that concatenates, instead of a zero-filled copy per slice
        separable, dilated = first.split([len(self.separable) * width, first.shape[1] - len(self.separable) * width],
                                         dim=1)
        middle = self.relu(separable).split(width, dim=1)
        second = self.bn_2(self.pointwise_2(torch.cat([conv(h) for conv, h in zip(self.depthwise_2, middle)], dim=1)))
        # the separable ops come first in CONVOLUTIONS order: their stage-2 outputs, then the dilated
        # ops' stage-1 outputs, keep the op order of `names`
        return torch.cat([second, dilated], dim=1).unflatten(1, (len(self.names) * self.m, -1))


class OutgoingEdges(nn.Module):
    """The mixed ops of the edges that read one node of a DARTS search cell.

    Args:
        c: the cell's channels ``C``.
        stride: 2 for reduction edges from the cell inputs, else 1.
        edges: the cell's indices of these edges (rows of its ``[14, len(primitives)]`` weights).
        primitives: the candidate ops (DARTS' 8 or the 7 of ``s5``).
        partial_channels: PC-DARTS ``K``: the ops run on the first ``C/K`` channels, the rest bypass
            them (max-pooled on stride-2 edges), then a channel shuffle per edge.
        auxiliary_skip: DARTS-: every edge adds ``a * skip(x)`` of its whole input (a
            FactorizedReduce on stride-2 edges).

    ``forward(x, flat, aux_weight)`` takes the cell's weights as
    :func:`~flatarch.reference_spaces.blocks.flat_weights` gives them and returns
    ``[N, m, C, H', W']``, one slice per edge in the order given.
    """

    def __init__(self, c: int, stride: int, edges: Sequence[int], primitives: Sequence[str],
                 partial_channels: int = 1, auxiliary_skip: bool = False):
        super().__init__()
        if c % partial_channels:
            raise ValueError(f"channels {c} not divisible by the PC-DARTS K={partial_channels}")
        self.k, m, c_op = partial_channels, len(edges), c // partial_channels
        self.m = m
        self.pools = nn.ModuleList(_pool(POOLS[n], stride) for n in primitives if n in POOLS)
        # DARTS puts a non-affine BatchNorm after each pool (model_search.py MixedOp)
        self.pool_bn = nn.BatchNorm2d(len(self.pools) * c_op, affine=False) if self.pools else None
        shared = [n for n in primitives if n in POOLS]
        per_edge = []
        self.skip = None
        if "skip_connect" in primitives:
            if stride == 1:
                shared.append("skip_connect")
            else:
                self.skip = FactorizedReduce(c_op, c_op, affine=False, copies=m)
                per_edge.append("skip_connect")
        names = [n for n in CONVOLUTIONS if n in primitives]
        self.convolutions = GroupedConvolutions(c_op, stride, m, names) if names else None
        per_edge += names
        self.identity_skip = stride == 1 and "skip_connect" in primitives
        self.bypass = nn.MaxPool2d(2, 2) if partial_channels > 1 and stride == 2 else None
        self.aux_skip = None
        if auxiliary_skip:
            self.aux_skip = nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=False, copies=m)
        self.register_buffer("mixing_index", mixing_index(edges, primitives, shared, per_edge), persistent=False)
        self.register_buffer("edge_rows", torch.tensor(list(edges)), persistent=False)

    def _mixed(self, x: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.pools:
            pooled = torch.cat([pool(x) for pool in self.pools], dim=1)
            parts.append(self.pool_bn(pooled).unflatten(1, (len(self.pools), -1)))
        if self.identity_skip:
            parts.append(x.unsqueeze(1))
        if self.skip is not None:
            parts.append(self.skip(x))
        if self.convolutions is not None:
            parts.append(self.convolutions(x))
        return mix_stack(torch.cat(parts, dim=1), flat, self.mixing_index)

    def forward(self, x: torch.Tensor, flat: torch.Tensor, aux_weight: float = 0.0) -> torch.Tensor:
        if self.k > 1:
            out = partial_channels(x, self.k, lambda active: self._mixed(active, flat), self.bypass)
        else:
            out = self._mixed(x, flat)
        if self.aux_skip is not None and aux_weight != 0.0:
            skip = self.aux_skip(x)
            out = out + aux_weight * (skip.unsqueeze(1) if skip.dim() == 4 else skip)
        return out
