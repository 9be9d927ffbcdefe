"""The DARTS space as a :class:`flatarch.reference_spaces.space.SearchSpace` (``--space darts``)."""

from __future__ import annotations

from typing import Any

import torch

from ..space import Method
from .genotype import Genotype, to_json
from .search_network import DartsSearchNetwork


class DartsSpace:
    """8 ops, 14 edges, normal and reduction cells. Build options: ``C`` (16), ``layers`` (8),
    ``steps`` (4), ``multiplier`` (4), ``stem_multiplier`` (3)."""

    name = "darts"
    #: SPEC section 3 (paper table 4): A2M rho 1e-1, eps 1e-2 on the DARTS space.
    defaults: dict[str, Any] = {"rho": 1e-1, "eps": 1e-2, "C": 16, "layers": 8}

    def build_network(self, *, num_classes: int, in_channels: int, method: Method, **options: Any) -> DartsSearchNetwork:
        allowed = {"C", "layers", "steps", "multiplier", "stem_multiplier", "alpha_init_scale"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown DARTS network options {sorted(unknown)}; allowed: {sorted(allowed)}")
        opts = {"C": self.defaults["C"], "layers": self.defaults["layers"], **options}
        return DartsSearchNetwork(num_classes=num_classes, in_channels=in_channels, method=method, **opts)

    def genotype(self, network: DartsSearchNetwork) -> Genotype:
        return network.genotype()

    def genotype_to_json(self, genotype: Genotype) -> dict[str, Any]:
        return to_json(genotype)

    def beta_decay_groups(self, network: DartsSearchNetwork) -> dict[str, torch.Tensor]:
        return {"normal": network.alphas_normal, "reduce": network.alphas_reduce}

    def evaluate(self, genotype: Genotype, *, dataset: str) -> dict[str, float]:
        # No benchmark table covers the DARTS space: accuracies come from `flatarch train`.
        return {}


SPACE = DartsSpace()
