"""The NAS-Bench-201 weight-sharing search network (SPEC section 5).

Layout for ``C`` initial channels and ``N`` cells per stage::

    stem: Conv3x3(in -> C) + BN
    stage 1: N search cells at C         (resolution H)
    ResidualReduction C -> 2C             (H/2)
    stage 2: N search cells at 2C
    ResidualReduction 2C -> 4C            (H/4)
    stage 3: N search cells at 4C
    BN + ReLU, global average pooling, Linear(4C -> classes)

All search cells share one architecture tensor ``arch_alpha`` of shape ``[6, 5]`` (edges x ops,
edge order of :data:`~flatarch.reference_spaces.nb201.encoding.EDGES`). Edge ``(j <- i)``
computes ``sum_o softmax(alpha_e)_o * o(h_i)`` and node ``j`` sums its incoming edges.

Method options (:class:`~flatarch.reference_spaces.space.Method`):

* PC-DARTS partial channels ``K``: only the first ``C/K`` channels of ``h_i`` go through the
  mixed op, the rest bypass it; the concatenation is channel-shuffled with ``K`` groups.
* PC-DARTS edge normalisation: ``arch_beta`` (one weight per edge); node ``j`` is
  ``sum_i softmax_i(beta_{j<-i}) * edge_{j<-i}`` (softmax over the node's incoming edges).
* DARTS- auxiliary skip: every edge adds ``a * h_i`` with ``a`` decaying 1 -> 0 over the search
  (:meth:`set_progress`), so skip connections need not win through the alphas to keep
  gradients flowing; ``a`` is 0 after the search, so the discrete cell is unaffected.

The forward reads ``self.arch_alpha`` / ``self.arch_beta`` live, so
:func:`flatarch.module_loss` can swap in perturbed values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoding import EDGES, NUM_EDGES, NUM_OPS
from .ops import MixedOp, ResidualReduction, channel_shuffle

#: for each target node, the indices (into EDGES) of its incoming edges
_INCOMING: tuple[tuple[int, ...], ...] = tuple(
    tuple(e for e, (t, _) in enumerate(EDGES) if t == target) for target in (1, 2, 3)
)


class SearchCell(nn.Module):
    """One NAS-Bench-201 cell at ``channels`` channels with a mixed op on each of its 6 edges."""

    def __init__(self, channels: int, partial_channels: int = 1):
        super().__init__()
        if channels % partial_channels:
            raise ValueError(
                f"partial channels K={partial_channels} must divide the cell's {channels} channels"
            )
        self.k = partial_channels
        self.edges = nn.ModuleList(MixedOp(channels // partial_channels) for _ in EDGES)

    def _edge(self, e: int, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return self.edges[e](h, weights)
        part = h.shape[1] // self.k
        mixed = self.edges[e](h[:, :part], weights)
        return channel_shuffle(torch.cat([mixed, h[:, part:]], dim=1), self.k)

    def forward(
        self,
        x: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        aux_skip: float = 0.0,
    ) -> torch.Tensor:
        nodes = [x]
        for incoming in _INCOMING:
            total = None
            for e in incoming:
                h = nodes[EDGES[e][1]]
                out = self._edge(e, h, op_weights[e])
                if aux_skip:
                    out = out + aux_skip * h
                if edge_weights is not None:
                    out = edge_weights[e] * out
                total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


class NB201SearchNetwork(nn.Module):
    """The NAS-Bench-201 supernet; implements :class:`~flatarch.reference_spaces.space.SearchNetwork`.

    Args:
        num_classes: classifier outputs.
        in_channels: image channels (3 for CIFAR/ImageNet16, 1 for the digits default).
        channels: ``C``, channels of the first stage (16 in NAS-Bench-201).
        cells_per_stage: ``N`` (5 in NAS-Bench-201).
        partial_channels: PC-DARTS ``K`` (1 = all channels).
        edge_normalization: PC-DARTS edge weights ``arch_beta``.
        auxiliary_skip: DARTS- decaying skip on every edge.
        alpha_init_scale: alphas start as ``scale * N(0, 1)`` (1e-3, as in NAS-Bench-201's code).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
        partial_channels: int = 1,
        edge_normalization: bool = False,
        auxiliary_skip: bool = False,
        alpha_init_scale: float = 1e-3,
    ):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(SearchCell(c, partial_channels) for _ in range(cells_per_stage))
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(c, num_classes)

        self.arch_alpha = nn.Parameter(alpha_init_scale * torch.randn(NUM_EDGES, NUM_OPS))
        self.arch_beta = (
            nn.Parameter(alpha_init_scale * torch.randn(NUM_EDGES)) if edge_normalization else None
        )
        self.auxiliary_skip = auxiliary_skip
        self.aux_skip_weight = 1.0 if auxiliary_skip else 0.0

    # --- SearchNetwork contract -------------------------------------------------------------
    def arch_parameters(self) -> dict[str, nn.Parameter]:
        params = {"arch_alpha": self.arch_alpha}
        if self.arch_beta is not None:
            params["arch_beta"] = self.arch_beta
        return params

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters().values()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_progress(self, fraction: float) -> None:
        """DARTS-: auxiliary skip weight ``1 - fraction`` (clamped to [0, 1])."""
        if self.auxiliary_skip:
            self.aux_skip_weight = float(min(1.0, max(0.0, 1.0 - fraction)))

    # --- forward ----------------------------------------------------------------------------
    def edge_weights(self) -> torch.Tensor | None:
        """Normalised PC-DARTS edge weights (softmax of ``arch_beta`` over each node's incoming
        edges), or None without edge normalisation."""
        if self.arch_beta is None:
            return None
        return torch.cat([F.softmax(self.arch_beta[list(idx)], dim=0) for idx in _INCOMING])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op_weights = F.softmax(self.arch_alpha, dim=-1)
        edge_weights = self.edge_weights()
        h = self.stem(x)
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                h = cell(h, op_weights, edge_weights, self.aux_skip_weight)
            else:
                h = cell(h)
        h = self.lastact(h)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
