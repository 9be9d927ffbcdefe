"""The NAS-Bench-201 weight-sharing search network (Dong & Yang 2020, section 3; its `TinyNetworkDarts`).

Layout for ``C`` initial channels and ``N`` cells per stage::

    stem: Conv3x3(in -> C) + BN
    stage 1: N search cells at C         (resolution H)
    ResidualReduction C -> 2C             (H/2)
    stage 2: N search cells at 2C
    ResidualReduction 2C -> 4C            (H/4)
    stage 3: N search cells at 4C
    BN + ReLU, global average pooling, Linear(4C -> classes)

All search cells share one architecture tensor ``arch_alpha`` of shape ``[6, 5]`` (edges x ops,
edge order of :data:`~flatarch.reference_spaces.nb201.encoding.EDGES`), the group ``"cell"``.
Edge ``(j <- i)`` computes ``sum_o w_o * o(h_i)`` with the mixing weights ``w = softmax(alpha_e)``
(or the weights given to :meth:`NB201SearchNetwork.forward`), and node ``j`` sums its incoming edges.

Method options (:class:`~flatarch.reference_spaces.space.NetworkOptions`), as the A2M authors'
NAS-Bench-201 code (AsquaredM ``nasbench201/model.py``) runs them:

* PC-DARTS partial channels ``K``: the whole cell runs on the first ``C/K`` channels of its
  input; its output is concatenated with the other channels and shuffled with ``K`` groups, once
  per cell (``SearchCell.forward_pc``). There are no edge-normalisation betas in that code.
* DARTS- auxiliary skip: every edge adds ``a * x``, ``x`` the *cell's input* (``default_forward``),
  with ``a`` set by the engine (:meth:`NB201SearchNetwork.set_auxiliary_skip`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import add_to_nodes, flat_weights, partial_channels
from ..space import ArchWeights
from .encoding import EDGES, NUM_EDGES, NUM_OPS, OPS
from .ops import OutgoingEdges, ResidualReduction

GROUP = "cell"

#: for each source node, the indices (into EDGES) of the edges that read it, by target node
_OUTGOING: tuple[tuple[int, ...], ...] = tuple(
    tuple(sorted((e for e, (_, s) in enumerate(EDGES) if s == source), key=lambda e: EDGES[e][0]))
    for source in (0, 1, 2)
)
#: the target node of each of those edges
_TARGETS: tuple[tuple[int, ...], ...] = tuple(tuple(EDGES[e][0] for e in edges) for edges in _OUTGOING)


class SearchCell(nn.Module):
    """One NAS-Bench-201 cell at ``channels`` channels with a mixed op on each of its 6 edges.

    The edges are grouped by the node they read (:class:`~.ops.OutgoingEdges`, one call for all
    of a node's edges); node ``j`` sums its incoming edges as the per-edge definition does."""

    def __init__(self, channels: int, partial_channels: int = 1):
        super().__init__()
        if channels % partial_channels:
            raise ValueError(
                f"partial channels K={partial_channels} must divide the cell's {channels} channels"
            )
        self.k = partial_channels
        self.sources = nn.ModuleList(OutgoingEdges(channels // partial_channels, edges) for edges in _OUTGOING)

    def _body(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float) -> torch.Tensor:
        flat = flat_weights(weights)
        nodes = [x]
        partial_sums: dict[int, torch.Tensor] = {}
        for source, (targets, outgoing) in enumerate(zip(_TARGETS, self.sources)):
            add_to_nodes(partial_sums, targets, outgoing(nodes[source], flat))
            node = partial_sums.pop(source + 1)  # every edge into node source+1 is in by now
            if aux_skip:
                # DARTS-: every edge adds a * (cell input); node j has j incoming edges
                node = node + (aux_skip * (source + 1)) * x
            nodes.append(node)
        return nodes[-1]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
        if self.k == 1:
            return self._body(x, weights, aux_skip)
        return partial_channels(x, self.k, lambda active: self._body(active, weights, aux_skip))


class NB201SearchNetwork(nn.Module):
    """The NAS-Bench-201 supernet; implements :class:`~flatarch.reference_spaces.space.SearchNetwork`.

    Args:
        num_classes: classifier outputs.
        in_channels: image channels (3 for CIFAR/ImageNet16, 1 for the digits default).
        channels: ``C``, channels of the first stage (16 in NAS-Bench-201).
        cells_per_stage: ``N`` (5 in NAS-Bench-201).
        partial_channels: PC-DARTS ``K`` (1 = all channels).
        auxiliary_skip: DARTS- skip from the cell input on every edge.
        alpha_init_scale: alphas start as ``scale * N(0, 1)`` (1e-3, as in NAS-Bench-201's code).
    """

    op_names = {GROUP: OPS}
    edge_names = {GROUP: tuple(f"{target}<-{source}" for target, source in EDGES)}

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
        partial_channels: int = 1,
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
        self.auxiliary_skip = auxiliary_skip
        self.aux_skip_weight = 1.0 if auxiliary_skip else 0.0

    # --- SearchNetwork contract -------------------------------------------------------------
    def arch_parameters(self) -> dict[str, nn.Parameter]:
        return {"arch_alpha": self.arch_alpha}

    def alphas(self) -> dict[str, nn.Parameter]:
        return {GROUP: self.arch_alpha}

    def cells_per_group(self) -> dict[str, int]:
        return {GROUP: sum(isinstance(m, SearchCell) for m in self.cells)}

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters().values()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_auxiliary_skip(self, weight: float) -> None:
        if self.auxiliary_skip:
            self.aux_skip_weight = float(weight)

    # --- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, weights: ArchWeights | None = None) -> torch.Tensor:
        given = None if weights is None else weights.get(GROUP)
        cell_weights = F.softmax(self.arch_alpha, dim=-1) if given is None else given
        per_cell = isinstance(cell_weights, Sequence)
        h = self.stem(x)
        index = 0
        for layer in self.cells:
            if isinstance(layer, SearchCell):
                h = layer(h, cell_weights[index] if per_cell else cell_weights, self.aux_skip_weight)
                index += 1
            else:
                h = layer(h)
        h = self.lastact(h)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
