"""The DARTS space as a :class:`flatarch.reference_spaces.space.SearchSpace` (``--space darts``)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..space import Method
from .genotype import PRIMITIVES, Genotype, to_json
from .search_network import DartsSearchNetwork


class DartsSpace:
    """8 ops, 14 edges, normal and reduction cells.

    Size of the search network: ``channels`` (alias ``C``; default 16) and the number of cells,
    given (first that is set) as ``layers`` to :meth:`build_network`, ``layers`` to the
    constructor, or ``cells_per_stage`` ``N`` -- normal cells between reductions, giving
    ``3N + 2`` cells (the paper's 8 cells are ``N = 2``; the engine's ``--cells``). Further network
    options: ``steps`` (4), ``multiplier`` (4), ``stem_multiplier`` (3), ``alpha_init_scale`` (1e-3).

    Space options (constructor): ``layers``; ``beta_normal`` and ``beta_reduce``, the weights of the
    beta-DARTS regulariser on the normal and reduction alphas (A2M paper appendix C.5:
    ``w_n L_beta(alpha_n) + w_r L_beta(alpha_r)``; default 1 and 1).
    """

    name = "darts"
    op_names = PRIMITIVES
    #: SPEC section 3 (paper table 4): A2M rho 1e-1, eps 1e-2; C = 16; 8 cells (2 normal cells per stage).
    defaults: dict[str, Any] = {"rho": 1e-1, "eps": 1e-2, "channels": 16, "cells_per_stage": 2}

    def __init__(self, layers: int | None = None, beta_normal: float = 1.0, beta_reduce: float = 1.0):
        self.layers = None if layers is None else _check_layers(layers)
        self.beta_decay_weights = {"normal": float(beta_normal), "reduce": float(beta_reduce)}

    def build_network(self, *, num_classes: int, in_channels: int, method: Method,
                      **options: Any) -> DartsSearchNetwork:
        aliases = {"C": "channels", "cells": "layers"}
        allowed = {"channels", "layers", "cells_per_stage", "steps", "multiplier", "stem_multiplier",
                   "alpha_init_scale"}
        opts: dict[str, Any] = {}
        for key, value in options.items():
            key = aliases.get(key, key)
            if key not in allowed:
                raise ValueError(f"unknown DARTS network option {key!r}; allowed: {', '.join(sorted(allowed))}")
            if value is not None:
                opts[key] = value
        C = opts.pop("channels", self.defaults["channels"])
        per_stage = opts.pop("cells_per_stage", None)
        if "layers" in opts:
            layers = _check_layers(opts.pop("layers"))
        elif self.layers is not None:
            layers = self.layers
        else:
            n = self.defaults["cells_per_stage"] if per_stage is None else int(per_stage)
            if n < 1:
                raise ValueError(f"cells_per_stage (--cells) must be >= 1 on the DARTS space, got {n}")
            layers = 3 * n + 2
        return DartsSearchNetwork(num_classes=num_classes, in_channels=in_channels, C=C, layers=layers,
                                  method=method, **opts)

    def genotype(self, network: DartsSearchNetwork) -> Genotype:
        return network.genotype()

    def genotype_to_json(self, genotype: Genotype) -> dict[str, Any]:
        return to_json(genotype)

    def beta_decay_groups(self, network: DartsSearchNetwork) -> dict[str, torch.Tensor]:
        return {"normal": network.alphas_normal, "reduce": network.alphas_reduce}

    def evaluate(self, genotype: Genotype, *, dataset: str) -> dict[str, float]:
        # No benchmark table covers the DARTS space: accuracies come from `flatarch train`.
        return {}

    def save_genotype(self, genotype: Genotype, out_dir: str, title: str | None = None) -> list[str]:
        """Write ``genotype.json`` (atomic) and ``genotype.png`` (normal and reduction cells) into
        ``out_dir``; returns their paths."""
        from .genotype import save
        from .plots import plot_genotype

        os.makedirs(out_dir, exist_ok=True)
        json_path, png_path = os.path.join(out_dir, "genotype.json"), os.path.join(out_dir, "genotype.png")
        save(genotype, json_path)
        plot_genotype(genotype, png_path, title=title)
        return [json_path, png_path]


def _check_layers(layers: int) -> int:
    if int(layers) < 3:
        raise ValueError(f"the DARTS search network needs at least 3 cells (two reductions), got layers={layers}")
    return int(layers)


SPACE = DartsSpace()
