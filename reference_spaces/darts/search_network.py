"""The DARTS weight-sharing search network (8 ops, 14 edges per cell, normal and reduction alphas).

Edge ``e = (j -> i)`` computes the mixed op ``sum_o softmax(alpha_e)_o * o(x_j)`` and node
``i = sum_{j < i} edge(j -> i)``; the cell output concatenates the 4 intermediate nodes.
Method variants (see :class:`flatarch.reference_spaces.space.Method`):

* PC-DARTS: only ``C/K`` channels go through the mixed op, the rest bypass it (max-pooled on
  reduction edges), then channels are shuffled with ``K`` groups; each edge output is also scaled
  by ``softmax(beta)`` over the incoming edges of its node (edge normalisation).
* DARTS-: every edge adds ``w_aux * skip(x_j)`` with ``w_aux = 1 - progress`` (set by
  :meth:`DartsSearchNetwork.set_progress`).

The architecture tensors are registered parameters ``alphas_normal``, ``alphas_reduce`` (14 x 8)
and, with edge normalisation, ``betas_normal``, ``betas_reduce`` (14); the forward reads them
live, so :func:`flatarch.module_loss` can swap in perturbed values by those names.
"""

from __future__ import annotations

import torch
from torch import nn

from ..space import Method
from .genotype import PRIMITIVES, STEPS, Genotype, derive_genotype, edge_normalized_betas, num_edges
from .ops import OPS, FactorizedReduce, ReLUConvBN, channel_shuffle


class MixedOp(nn.Module):
    """All 8 ops on one edge, weighted by the edge's softmax row."""

    def __init__(self, c: int, stride: int, partial_channels: int = 1, auxiliary_skip: bool = False):
        super().__init__()
        if c % partial_channels:
            raise ValueError(f"channels {c} not divisible by the PC-DARTS K={partial_channels}")
        self.k = partial_channels
        c_op = c // partial_channels
        self.ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = OPS[name](c_op, stride, False)
            if "pool" in name:
                # pooling has no parameters: a non-affine BN puts it on the convolutions' scale
                op = nn.Sequential(op, nn.BatchNorm2d(c_op, affine=False))
            self.ops.append(op)
        self.bypass_pool = nn.MaxPool2d(2, 2) if (partial_channels > 1 and stride == 2) else None
        self.aux_skip = None
        if auxiliary_skip:
            self.aux_skip = nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_weight: float = 0.0) -> torch.Tensor:
        if self.k > 1:
            c_part = x.shape[1] // self.k
            # contiguous: channel slices of a channels-last tensor crash the CPU backward (torch 2.14)
            active, bypass = x[:, :c_part].contiguous(), x[:, c_part:].contiguous()
            mixed = sum(w * op(active) for w, op in zip(weights, self.ops))
            if self.bypass_pool is not None:
                bypass = self.bypass_pool(bypass)
            out = channel_shuffle(torch.cat([mixed, bypass], dim=1), self.k)
        else:
            out = sum(w * op(x) for w, op in zip(weights, self.ops))
        if self.aux_skip is not None and aux_weight != 0.0:
            out = out + aux_weight * self.aux_skip(x)
        return out


class SearchCell(nn.Module):
    def __init__(self, c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool,
                 method: Method, steps: int = STEPS, multiplier: int = 4):
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(i + 2):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(c, stride, method.partial_channels, method.auxiliary_skip))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None, aux_weight: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            terms = []
            for j, h in enumerate(states):
                out = self.edges[offset + j](h, weights[offset + j], aux_weight)
                if edge_weights is not None:
                    out = edge_weights[offset + j] * out
                terms.append(out)
            offset += len(states)
            states.append(sum(terms))
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchNetwork(nn.Module):
    """Stem (3x3 conv to ``3C``), ``layers`` search cells (reductions at ``layers//3`` and
    ``2*layers//3``, doubling channels), global average pooling, linear classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, C: int = 16, layers: int = 8,
                 method: Method | None = None, steps: int = STEPS, multiplier: int = 4,
                 stem_multiplier: int = 3, alpha_init_scale: float = 1e-3):
        super().__init__()
        self.method = method or Method()
        self.steps = steps
        self.auxiliary_skip_weight = 1.0 if self.method.auxiliary_skip else 0.0
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(c_pp, c_p, c_curr, reduction, reduction_prev, self.method, steps, multiplier))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        k = num_edges(steps)
        self.alphas_normal = nn.Parameter(alpha_init_scale * torch.randn(k, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(alpha_init_scale * torch.randn(k, len(PRIMITIVES)))
        if self.method.edge_normalization:
            self.betas_normal = nn.Parameter(alpha_init_scale * torch.randn(k))
            self.betas_reduce = nn.Parameter(alpha_init_scale * torch.randn(k))
        else:
            self.betas_normal = self.betas_reduce = None

    # -- SearchNetwork contract ---------------------------------------------------------------

    def arch_parameters(self) -> dict[str, nn.Parameter]:
        params = {"alphas_normal": self.alphas_normal, "alphas_reduce": self.alphas_reduce}
        if self.betas_normal is not None:
            params.update(betas_normal=self.betas_normal, betas_reduce=self.betas_reduce)
        return params

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters().values()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_progress(self, fraction: float) -> None:
        """DARTS-: the auxiliary skip weight decays linearly, ``w_aux = 1 - fraction``."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must lie in [0, 1], got {fraction}")
        if self.method.auxiliary_skip:
            self.auxiliary_skip_weight = 1.0 - float(fraction)

    def genotype(self) -> Genotype:
        return derive_genotype(self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce,
                               steps=self.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = torch.softmax(self.alphas_normal, dim=-1)
        w_reduce = torch.softmax(self.alphas_reduce, dim=-1)
        e_normal = e_reduce = None
        if self.betas_normal is not None:
            e_normal = edge_normalized_betas(self.betas_normal, self.steps)
            e_reduce = edge_normalized_betas(self.betas_reduce, self.steps)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                w, e = w_reduce, e_reduce
            else:
                w, e = w_normal, e_normal
            s0, s1 = s1, cell(s0, s1, w, e, self.auxiliary_skip_weight)
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out)
