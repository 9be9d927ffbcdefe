"""The DARTS space as a :class:`flatarch.reference_spaces.space.SearchSpace` (``--space darts``)."""

from __future__ import annotations

import os
from typing import Any

from flatarch.defaults import EPS, RHO_BY_SPACE

from ..errors import UsageError
from ..space import ArchWeights, NetworkOptions
from .genotype import DEFAULT_OPS, OP_SETS, STEPS, Genotype, edge_index, from_json, genotype_from_weights, to_json
from .search_network import DartsSearchNetwork

GENOTYPE_JSON, GENOTYPE_PNG = "genotype.json", "genotype.png"


class DartsSpace:
    """14 edges, normal and reduction cells, the 7 ops of ``s5`` (the default,
    :data:`~.genotype.DEFAULT_OPS`) or the 8 of the original DARTS (``ops="darts"``, with ``none``).

    Size of the search network: ``channels`` (default 16) and ``cells_per_stage`` ``N``, the normal
    cells between reductions, giving ``3N + 2`` cells (the paper's 8 cells are ``N = 2``; the
    engine's ``--cells``).

    Space options (constructor): ``beta_normal`` and ``beta_reduce``, the weights of the beta-DARTS
    regulariser on the normal and reduction alphas (A2M paper appendix C.5:
    ``w_n L_beta(alpha_n) + w_r L_beta(alpha_r)``; default 1 and 1).
    """

    name = "darts"
    #: paper table 4: A2M rho 1e-1, eps 1e-2; C = 16; 8 cells (2 normal cells per stage); the s5 ops
    defaults: dict[str, Any] = {"rho": RHO_BY_SPACE["darts"], "eps": EPS, "channels": 16, "cells_per_stage": 2,
                                "ops": DEFAULT_OPS}

    def __init__(self, beta_normal: float = 1.0, beta_reduce: float = 1.0):
        self.beta_decay_weights = {"normal": float(beta_normal), "reduce": float(beta_reduce)}

    def build_network(self, *, num_classes: int, in_channels: int, options: NetworkOptions, channels: int,
                      cells_per_stage: int) -> DartsSearchNetwork:
        ops = options.ops or DEFAULT_OPS  # a network built outside the engine
        if ops not in OP_SETS:
            raise UsageError(f"unknown DARTS op set {ops!r}; choose one of: {', '.join(OP_SETS)}")
        if channels % options.partial_channels:
            raise UsageError(f"--channels {channels} must be a multiple of PC-DARTS' K = {options.partial_channels}")
        return DartsSearchNetwork(num_classes=num_classes, in_channels=in_channels, C=channels,
                                  layers=3 * cells_per_stage + 2, options=options, primitives=OP_SETS[ops])

    def genotype(self, network: DartsSearchNetwork, weights: ArchWeights | None = None) -> Genotype:
        import torch

        given = weights or {}
        mixing = {g: given[g] if given.get(g) is not None else torch.softmax(a.detach(), dim=-1)
                  for g, a in network.alphas().items()}
        return genotype_from_weights(mixing["normal"], mixing["reduce"], network.betas_normal, network.betas_reduce,
                                     network.steps, network.primitives)

    def genotype_to_json(self, genotype: Genotype) -> dict[str, Any]:
        return to_json(genotype)

    def genotype_from_json(self, data: dict[str, Any]) -> Genotype:
        return from_json(data)

    def reference_accuracies(self) -> dict[str, dict[str, float]]:
        return {}

    def evaluate(self, genotype: Genotype) -> dict[str, float]:
        return {}  # no benchmark table covers the DARTS space: accuracies come from `flatarch train`

    def profile(self, genotype: Genotype) -> dict[str, dict[str, int]]:
        """The evaluation network at the paper's size (C = 36, 20 cells, CIFAR-10's 32x32 images and
        10 classes), without its auxiliary head as the DARTS paper counts (DARTS-V2: 3.3M)."""
        from ..profile import profile
        from .evaluation_network import EvaluationNetwork, count_parameters
        from .train import TrainConfig

        paper = TrainConfig().resolved("cifar10")
        model = EvaluationNetwork(genotype, num_classes=10, C=paper.channels, layers=paper.layers, auxiliary=False)
        return {"cifar10": profile(model, (3, 32, 32), count_parameters(model))}

    def topology(self, group: str) -> list[list[int]]:
        return [[edge_index(node, pred) for pred in range(node + 2)] for node in range(STEPS)]

    def save_genotype(self, genotype: Genotype, out_dir: str, title: str) -> list[str]:
        """``genotype.json`` (atomic) and ``genotype.png`` (normal and reduction cells)."""
        from .genotype import save
        from .plots import plot_genotype

        save(genotype, os.path.join(out_dir, GENOTYPE_JSON))
        plot_genotype(genotype, os.path.join(out_dir, GENOTYPE_PNG), title=title)
        return [GENOTYPE_JSON, GENOTYPE_PNG]
