"""The NAS-Bench-201 search space for the engine (``--space nb201``).

Genotype: the argmax op of each edge's alphas, as the benchmark's arch string (PC-DARTS edge
weights do not change it: every NAS-Bench-201 edge is kept). Evaluation: benchmark lookup of
the cell's test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120 when a table is found
(``table=`` path, else :func:`~flatarch.reference_spaces.nb201.benchmark.find_table`, i.e. the
``FLATARCH_NB201_TABLE`` environment variable); without one, ``evaluate`` returns ``{}``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..space import Method
from .benchmark import TABLE_ENV, BenchmarkTable, find_table
from .encoding import OPS, sequence_to_arch
from .search_network import NB201SearchNetwork


class NB201Space:
    """:class:`~flatarch.reference_spaces.space.SearchSpace` for NAS-Bench-201.

    Args:
        table: path of a benchmark table for :meth:`evaluate` (None: look it up with ``find_table``).
    """

    name = "nb201"
    op_names = OPS
    defaults: dict[str, Any] = {"rho": 1e-2, "eps": 1e-2, "channels": 16, "cells_per_stage": 5}

    def __init__(self, table: str | None = None):
        self.table_path = table
        self._table = None
        self._table_loaded = False
        if table is not None or os.environ.get(TABLE_ENV, "").strip():
            self.table()  # a bad path fails now, before a search, not after its first epoch

    def build_network(
        self,
        *,
        num_classes: int,
        in_channels: int,
        method: Method,
        channels: int | None = None,
        cells_per_stage: int | None = None,
        **options: Any,
    ) -> NB201SearchNetwork:
        if options:
            raise TypeError(f"unknown NAS-Bench-201 network options: {', '.join(options)}")
        return NB201SearchNetwork(
            num_classes=num_classes,
            in_channels=in_channels,
            channels=channels or self.defaults["channels"],
            cells_per_stage=cells_per_stage or self.defaults["cells_per_stage"],
            partial_channels=method.partial_channels,
            edge_normalization=method.edge_normalization,
            auxiliary_skip=method.auxiliary_skip,
        )

    def genotype(self, network: NB201SearchNetwork) -> str:
        seq = network.arch_alpha.detach().argmax(dim=-1).tolist()
        return sequence_to_arch(seq)

    def genotype_to_json(self, genotype: str) -> str:
        return genotype

    def beta_decay_groups(self, network: NB201SearchNetwork) -> dict[str, torch.Tensor]:
        return {"alpha": network.arch_alpha}

    def table(self) -> BenchmarkTable | None:
        """The benchmark table, loaded once (None when none is given or configured).

        Raises:
            ValueError: the table path does not exist or is not a readable table (the message
                names the path and where it came from: ``--table`` or ``$FLATARCH_NB201_TABLE``).
        """
        if not self._table_loaded:
            try:
                path = find_table(self.table_path)
                self._table = BenchmarkTable.load(path) if path else None
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"NAS-Bench-201 table: {exc}; pass --table PATH (or set {TABLE_ENV}) to a CSV/npz table "
                    "such as the one `flatarch nb201 export` writes"
                ) from None
            self._table_loaded = True
        return self._table

    def evaluate(self, genotype: str, *, dataset: str) -> dict[str, float]:
        """Benchmark test accuracies ``{"cifar10": .., "cifar100": .., "imagenet16-120": ..}`` of
        the cell (the same whatever dataset the search ran on), ``{}`` without a table."""
        table = self.table()
        if table is None:
            return {}
        return {k: float(v) for k, v in table.lookup(genotype).items()}
