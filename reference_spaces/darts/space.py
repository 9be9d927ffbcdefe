"""The DARTS space as a :class:`flatarch.reference_spaces.space.SearchSpace` (``--space darts``)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..space import Method
from .genotype import Genotype, to_json
from .search_network import DartsSearchNetwork


class DartsSpace:
    """8 ops, 14 edges, normal and reduction cells.

    Network options (``build_network``): ``channels`` (alias ``C``, default 16), ``layers``
    (alias ``cells``, default 8), ``steps`` (4), ``multiplier`` (4), ``stem_multiplier`` (3);
    ``None`` means the default. Space options (constructor): ``layers`` (the default number of
    cells, 8), ``beta_normal`` and ``beta_reduce``, the weights of the beta-DARTS regulariser on the
    normal and reduction alphas (A2M paper appendix C.5: ``w_n L_beta(alpha_n) + w_r L_beta(alpha_r)``;
    default 1 and 1).
    """

    name = "darts"
    #: SPEC section 3 (paper table 4): A2M rho 1e-1, eps 1e-2; C = 16, 8 cells.
    defaults: dict[str, Any] = {"rho": 1e-1, "eps": 1e-2, "channels": 16, "layers": 8}

    def __init__(self, layers: int = 8, beta_normal: float = 1.0, beta_reduce: float = 1.0):
        if int(layers) < 3:
            raise ValueError(f"the DARTS search network needs at least 3 cells (two reductions), got layers={layers}")
        self.defaults = {**DartsSpace.defaults, "layers": int(layers)}
        self.beta_decay_weights = {"normal": float(beta_normal), "reduce": float(beta_reduce)}

    def build_network(self, *, num_classes: int, in_channels: int, method: Method,
                      **options: Any) -> DartsSearchNetwork:
        aliases = {"C": "channels", "cells": "layers"}
        opts: dict[str, Any] = {}
        for key, value in options.items():
            key = aliases.get(key, key)
            if key == "cells_per_stage":
                if value is not None:
                    raise ValueError("the DARTS space has no cells_per_stage: give layers (8 = reductions "
                                     "after cells 2 and 5), e.g. --layers 8")
                continue
            if key not in {"channels", "layers", "steps", "multiplier", "stem_multiplier", "alpha_init_scale"}:
                raise ValueError(f"unknown DARTS network option {key!r}; allowed: channels, layers, steps, "
                                 "multiplier, stem_multiplier, alpha_init_scale")
            if value is not None:
                opts[key] = value
        C = opts.pop("channels", self.defaults["channels"])
        layers = opts.pop("layers", self.defaults["layers"])
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


SPACE = DartsSpace()
