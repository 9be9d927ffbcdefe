"""The DARTS weight-sharing search network (14 edges per cell, normal and reduction alphas).

Edge ``e = (j -> i)`` computes the mixed op ``sum_o w_o * o(x_j)`` with the mixing weights
``w = softmax(alpha_e)`` (or those given to :meth:`DartsSearchNetwork.forward`), node
``i = sum_{j < i} edge(j -> i)``, and the cell output concatenates the 4 intermediate nodes.
The candidate ops are the 7 of ``s5`` (the default) or the 8 of DARTS (with ``none``); see
:data:`~flatarch.reference_spaces.darts.genotype.OP_SETS`. Method options
(:class:`~flatarch.reference_spaces.space.NetworkOptions`):

* PC-DARTS (``model_search.py`` of yuhuixu1993/PC-DARTS): only ``C/K`` channels go through the
  mixed op, the rest bypass it (max-pooled on reduction edges), then channels are shuffled with
  ``K`` groups; each edge output is also scaled by ``softmax(beta)`` over the incoming edges of
  its node (edge normalisation).
* DARTS- (``src/search/model_search.py`` of Meituan-AutoML/DARTS-): every mixed op adds
  ``a * skip(x_j)`` of its own input (a ``FactorizedReduce`` on stride-2 edges), ``a`` set by the
  engine through :meth:`DartsSearchNetwork.set_auxiliary_skip`.

The architecture tensors are registered parameters ``alphas_normal``, ``alphas_reduce``
(groups ``"normal"``, ``"reduce"``) and, with edge normalisation, ``betas_normal``,
``betas_reduce``; the forward reads them live, so :func:`flatarch.module_loss` can swap in
perturbed values by those names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..blocks import ReLUConvBN, add_to_nodes, flat_weights
from ..space import ArchWeights, NetworkOptions
from .genotype import DEFAULT_OPS, OP_SETS, STEPS, edge_index, edge_normalized_betas, num_edges
from .ops import FactorizedReduce
from .search_ops import OutgoingEdges

GROUPS = ("normal", "reduce")


class SearchCell(nn.Module):
    """Two preprocessed inputs, ``steps`` intermediate nodes, the output the concatenation of the
    last ``multiplier`` nodes. The edges are grouped by the node they read
    (:class:`~.search_ops.OutgoingEdges`, one call for all of a node's edges); node ``i`` sums its
    incoming edges, each scaled by its edge-normalisation weight when there is one."""

    def __init__(self, c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool,
                 options: NetworkOptions, primitives: Sequence[str], steps: int = STEPS, multiplier: int = 4):
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        # edge_index(node, source) = offset of the node + source; source j feeds the nodes after it
        self.outgoing = [[(node, edge_index(node, source)) for node in range(max(0, source - 1), steps)]
                         for source in range(steps + 1)]
        self.sources = nn.ModuleList(
            OutgoingEdges(c, 2 if reduction and source < 2 else 1, [e for _, e in targets], primitives,
                          options.partial_channels, options.auxiliary_skip)
            for source, targets in enumerate(self.outgoing))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None, aux_weight: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        flat = flat_weights(weights)
        sums: dict[int, torch.Tensor] = {}
        for source, (targets, group) in enumerate(zip(self.outgoing, self.sources)):
            out = group(states[source], flat, aux_weight)
            if edge_weights is not None:
                out = out * edge_weights[group.edge_rows].view(1, -1, 1, 1, 1).to(out.dtype)
            add_to_nodes(sums, [node for node, _ in targets], out)
            if source >= 1:  # every edge into node source-1 (state source+1) is in by now
                states.append(sums.pop(source - 1))
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchNetwork(nn.Module):
    """Stem (3x3 conv to ``3C``), ``layers`` search cells (reductions at ``layers//3`` and
    ``2*layers//3``, doubling channels), global average pooling, linear classifier.

    ``options.stem == "imagenet"``: PC-DARTS' ImageNet stem (``model_search_imagenet.py`` L113-L125):
    two stride-2 convolutions to ``3C`` (the first cell's ``s0``), a third (its ``s1``), so 224-pixel
    images reach the cells at 28 pixels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, C: int = 16, layers: int = 8,
                 options: NetworkOptions | None = None, primitives: Sequence[str] = OP_SETS[DEFAULT_OPS],
                 steps: int = STEPS,
                 multiplier: int = 4, stem_multiplier: int = 3, alpha_init_scale: float = 1e-3):
        super().__init__()
        self.options = options = options or NetworkOptions()
        self.primitives = tuple(primitives)
        self.op_names = dict.fromkeys(GROUPS, self.primitives)
        # node numbers as in genotypes: 0, 1 the cell inputs, 2.. the intermediate nodes
        names = tuple(f"{node + 2}<-{pred}" for node in range(steps) for pred in range(node + 2))
        self.edge_names = dict.fromkeys(GROUPS, names)
        self.steps = steps
        self.auxiliary_skip_weight = 1.0 if options.auxiliary_skip else 0.0
        c_curr = stem_multiplier * C
        self.stem1: nn.Module | None = None
        if options.stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_curr // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_curr // 2),
                nn.ReLU(inplace=False), nn.Conv2d(c_curr // 2, c_curr, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_curr))
            self.stem1 = ReLUConvBN(c_curr, c_curr, 3, 2, 1)
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = self.stem1 is not None  # the first cell's s0 has twice its s1's resolution
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(c_pp, c_p, c_curr, reduction, reduction_prev, options, self.primitives,
                                         steps, multiplier))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        k = num_edges(steps)
        self.alphas_normal = nn.Parameter(alpha_init_scale * torch.randn(k, len(self.primitives)))
        self.alphas_reduce = nn.Parameter(alpha_init_scale * torch.randn(k, len(self.primitives)))
        if options.edge_normalization:
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

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"normal": self.alphas_normal, "reduce": self.alphas_reduce}

    def cells_per_group(self) -> dict[str, int]:
        reductions = sum(cell.reduction for cell in self.cells)
        return {"normal": len(self.cells) - reductions, "reduce": reductions}

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters().values()}
        return [p for p in self.parameters() if id(p) not in arch]

    def set_auxiliary_skip(self, weight: float) -> None:
        if self.options.auxiliary_skip:
            self.auxiliary_skip_weight = float(weight)

    def edge_weights(self) -> dict[str, torch.Tensor | None]:
        """PC-DARTS' normalised betas per group (``None`` without edge normalisation)."""
        if self.betas_normal is None:
            return dict.fromkeys(GROUPS)
        return {"normal": edge_normalized_betas(self.betas_normal, self.steps),
                "reduce": edge_normalized_betas(self.betas_reduce, self.steps)}

    def forward(self, x: torch.Tensor, weights: ArchWeights | None = None) -> torch.Tensor:
        given = weights or {}
        mixing = {g: given[g] if given.get(g) is not None else torch.softmax(a, dim=-1)
                  for g, a in self.alphas().items()}
        edges = self.edge_weights()
        seen = dict.fromkeys(GROUPS, 0)
        s0 = s1 = self.stem(x)
        if self.stem1 is not None:
            s1 = self.stem1(s0)
        for cell in self.cells:
            group = "reduce" if cell.reduction else "normal"
            w = mixing[group]
            if isinstance(w, Sequence):
                w = w[seen[group]]
            seen[group] += 1
            s0, s1 = s1, cell(s0, s1, w, edges[group], self.auxiliary_skip_weight)
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out)
