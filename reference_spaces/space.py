"""The contract between the search engine and a search space.

A space (``--space``) is found by name through :mod:`flatarch.reference_spaces.registry`. The
engine (:mod:`flatarch.reference_spaces.engine`) uses exactly the members declared below, and
nothing else, so a new space implements :class:`SearchSpace` and its network implements
:class:`SearchNetwork`.

Architecture weights. A network's op choices come in *groups* of alphas (NAS-Bench-201: one
group ``"cell"`` shared by all 15 cells; DARTS: ``"normal"`` and ``"reduce"``). The *mixing
weights* of a group are ``softmax(alpha)`` per edge, a ``[edges, ops]`` tensor. The engine
passes mixing weights to :meth:`SearchNetwork.forward` whenever a method changes them: SDARTS
perturbs them for the weight step, lambda-DARTS gives every cell its own copy, DARTS-PT makes
projected edges one-hot. ``forward(x)`` alone uses ``softmax`` of the live alphas, so
:func:`flatarch.module_loss` can evaluate the network at perturbed alphas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

#: mixing weights by group: one ``[edges, ops]`` tensor shared by the group's cells, or a
#: sequence with one tensor per cell of the group (in network order)
ArchWeights = Mapping[str, "torch.Tensor | Sequence[torch.Tensor]"]


@dataclass(frozen=True)
class NetworkOptions:
    """What a method changes in the supernet itself; each space builds it as the method's authors
    did on that space.

    Attributes:
        partial_channels: PC-DARTS' ``K``: only ``1/K`` of the channels go through the mixed ops
            (1 = all). DARTS space: per edge, as PC-DARTS; NAS-Bench-201: the whole cell on the
            first ``C/K`` channels, as the A2M authors' NAS-Bench-201 code.
        edge_normalization: PC-DARTS' softmax-weighted ``betas`` on each node's incoming edges
            (DARTS space; the NAS-Bench-201 PC-DARTS code has none).
        auxiliary_skip: DARTS-' auxiliary skip connection, its weight set by the engine through
            :meth:`SearchNetwork.set_auxiliary_skip`.
        ops: the candidate-op set, by the space's name for it (``None``: the space's default).
        stem: ``"cifar"`` (the cells see the input resolution) or ``"imagenet"`` (three stride-2
            convolutions first, for 224-pixel images: PC-DARTS' ImageNet search network).
    """

    partial_channels: int = 1
    edge_normalization: bool = False
    auxiliary_skip: bool = False
    ops: str | None = None
    stem: str = "cifar"


@runtime_checkable
class SearchNetwork(Protocol):
    """A weight-sharing supernet whose forward reads its own live architecture tensors."""

    #: op names per group, in alpha column order (labels for plots and genotypes)
    op_names: Mapping[str, Sequence[str]]
    #: edge names per group, in alpha row order, e.g. ``"2<-1"`` (labels for plots)
    edge_names: Mapping[str, Sequence[str]]
    #: the blocks the network repeats, in order (search cells; NAS-Bench-201's residual
    #: reductions too): :func:`compile_cells` compiles each
    cells: nn.ModuleList

    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """Every architecture tensor the ArchOptimizer updates (alphas, PC-DARTS betas) as a flat
        ``{name: parameter}`` dict of registered parameters (names usable by ``module_loss``)."""

    def alphas(self) -> dict[str, nn.Parameter]:
        """The op-choice alphas by group (``{"cell": ...}``, ``{"normal": ..., "reduce": ...}``)."""

    def cells_per_group(self) -> dict[str, int]:
        """How many cells use each group's weights (for per-cell weights, see ``forward``)."""

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""

    def set_auxiliary_skip(self, weight: float) -> None:
        """DARTS-: the auxiliary skip connection's weight (a no-op without one)."""

    def forward(self, x: torch.Tensor, weights: ArchWeights | None = None) -> torch.Tensor:
        """Logits; ``weights`` replaces ``softmax(alpha)`` of the groups it names."""


def compile_cells(network: SearchNetwork, **options: Any) -> None:
    """``torch.compile`` each of ``network.cells`` in place (``options`` go to ``nn.Module.compile``).

    Regional compilation, as PyTorch recommends for networks of repeated blocks: the cells share
    one forward, so Dynamo traces one graph per distinct cell (6 in an A2-DARTS iteration on the
    NAS-Bench-201 supernet: 4 for its 15 search cells in 3 sizes, 2 for its residual reductions),
    where compiling the whole network traces all of them as one graph (which had not finished
    compiling after 230 s on an H200). In place, so parameter names,
    checkpoints and ``module_loss`` paths do not change.

    Each cell size and kind (normal, reduction, after a reduction) in each mode (training or
    evaluation, with or without gradients) is a graph of its own for the one shared forward, more
    than Dynamo's default limit of 8 per function on the DARTS space (the cells past it would run
    uncompiled), so the limit is raised to cover every cell in four modes.
    """
    import torch._dynamo  # noqa: PLC0415 (only a compiled search needs Dynamo)

    limit = 4 * len(network.cells)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    for cell in network.cells:
        cell.compile(**options)


@runtime_checkable
class SearchSpace(Protocol):
    """What the engine needs from a space. ``name`` is the ``--space`` value of the CLI."""

    name: str
    #: per-space defaults the engine uses when a setting is not given: ``rho``, ``eps``,
    #: ``channels``, ``cells_per_stage``
    defaults: Mapping[str, Any]
    #: weights of the beta-DARTS regulariser per group (A2M paper appendix C.5 on the DARTS space)
    beta_decay_weights: Mapping[str, float]

    def build_network(self, *, num_classes: int, in_channels: int, options: NetworkOptions,
                      channels: int, cells_per_stage: int) -> SearchNetwork:
        """The supernet; raises ``ValueError`` naming the option that cannot work."""

    def genotype(self, network: SearchNetwork, weights: ArchWeights | None = None) -> Any:
        """The discrete architecture of ``weights`` (default ``softmax`` of the network's alphas;
        PC-DARTS betas, where the network has them, weigh the edges)."""

    def genotype_to_json(self, genotype: Any) -> Any:
        """A JSON-serialisable form (NAS-Bench-201: the arch string)."""

    def genotype_from_json(self, data: Any) -> Any:
        """The inverse of :meth:`genotype_to_json`."""

    def evaluate(self, genotype: Any) -> dict[str, float]:
        """Test accuracies where the space knows them without training (the NAS-Bench-201
        benchmark lookup), by dataset; ``{}`` where it does not. Must be cheap: it runs every epoch."""

    def reference_accuracies(self) -> dict[str, dict[str, float]]:
        """Accuracies to compare a found genotype with, by name (NAS-Bench-201: ``"optimum"``, the best
        cell per dataset, and ``"all-skip"``, the cell DARTS collapses to); ``{}`` where none are known."""

    def profile(self, genotype: Any) -> dict[str, dict[str, int]]:
        """Per dataset, the ``{"params", "flops", "macs"}`` of the network the genotype is evaluated
        as (:func:`flatarch.reference_spaces.profile.profile`): NAS-Bench-201 the benchmark's network
        of the cell, the DARTS space the paper's evaluation network."""

    def save_genotype(self, genotype: Any, out_dir: str, title: str) -> list[str]:
        """Write the genotype's files (JSON, a picture) into ``out_dir``; returns their names."""

    def topology(self, group: str) -> Sequence[Sequence[int]] | None:
        """For each intermediate node, the edge indices entering it, where a genotype keeps only
        some of them (DARTS: 2 per node), else ``None`` (NAS-Bench-201 keeps every edge).
        DARTS-PT's topology projection needs it."""
