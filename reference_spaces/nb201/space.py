"""The NAS-Bench-201 search space for the engine (``--space nb201``).

Genotype: the strongest op of each edge (every NAS-Bench-201 edge is kept), as the benchmark's
arch string. Evaluation: benchmark lookup of the cell's 200-epoch test accuracy on CIFAR-10,
CIFAR-100 and ImageNet16-120 (``table=`` path, else the ``FLATARCH_NB201_TABLE`` environment
variable, else the table shipped with flatarch).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flatarch.atomic_files import atomic_write_text
from flatarch.defaults import EPS, RHO_BY_SPACE

from ..errors import UsageError
from ..space import ArchWeights, NetworkOptions
from .benchmark import BenchmarkTable, load_table
from .encoding import NUM_EDGES, OPS, arch_to_sequence, sequence_to_arch
from .search_network import GROUP, NB201SearchNetwork

GENOTYPE_NAME = "genotype.json"
#: the cell first-order DARTS collapses to on NAS-Bench-201
ALL_SKIP = sequence_to_arch([OPS.index("skip_connect")] * NUM_EDGES)


class NB201Space:
    """:class:`~flatarch.reference_spaces.space.SearchSpace` for NAS-Bench-201.

    Args:
        table: path of a benchmark table for :meth:`evaluate` (None: ``$FLATARCH_NB201_TABLE``, else the
            shipped table).
    """

    name = "nb201"
    defaults: dict[str, Any] = {"rho": RHO_BY_SPACE["nb201"], "eps": EPS, "channels": 16, "cells_per_stage": 5}
    beta_decay_weights = {GROUP: 1.0}

    def __init__(self, table: str | None = None):
        self.table_path = table
        self._table: BenchmarkTable | None = None
        self.table()  # a bad path fails now, before a search, not after its first epoch

    def build_network(self, *, num_classes: int, in_channels: int, options: NetworkOptions, channels: int,
                      cells_per_stage: int) -> NB201SearchNetwork:
        if options.stem != "cifar":
            raise UsageError("the NAS-Bench-201 space searches small images (16 to 32 pixels); --dataset imagenet "
                             "searches the DARTS space (--space darts), or use --dataset imagenet16-120")
        if options.ops not in (None, "nb201"):
            raise UsageError(f"the NAS-Bench-201 space has one op set (nb201), not {options.ops!r}; drop --ops")
        if options.edge_normalization:
            raise UsageError("the NAS-Bench-201 PC-DARTS cell has no edge normalisation (the A2M authors' "
                             "nasbench201/model.py forward_pc has no betas); drop --edge-normalization")
        if channels % options.partial_channels:
            raise UsageError(f"--channels {channels} must be a multiple of PC-DARTS' K = {options.partial_channels}")
        return NB201SearchNetwork(num_classes=num_classes, in_channels=in_channels, channels=channels,
                                  cells_per_stage=cells_per_stage, partial_channels=options.partial_channels,
                                  auxiliary_skip=options.auxiliary_skip)

    def genotype(self, network: NB201SearchNetwork, weights: ArchWeights | None = None) -> str:
        cell = network.arch_alpha if weights is None else weights[GROUP]
        return sequence_to_arch(cell.detach().argmax(dim=-1).tolist())

    def genotype_to_json(self, genotype: str) -> str:
        return genotype

    def genotype_from_json(self, data: str) -> str:
        return sequence_to_arch(arch_to_sequence(data))

    def topology(self, group: str) -> None:
        return None  # every edge of a NAS-Bench-201 cell is kept

    def table(self) -> BenchmarkTable:
        """The benchmark table (``table=``, else ``$FLATARCH_NB201_TABLE``, else the shipped one), loaded once."""
        if self._table is None:
            self._table = load_table(self.table_path)
        return self._table

    def evaluate(self, genotype: str) -> dict[str, float]:
        """Benchmark test accuracies ``{"cifar10": .., "cifar100": .., "imagenet16-120": ..}`` of
        the cell (whatever dataset the search ran on)."""
        return {k: float(v) for k, v in self.table().lookup(genotype).items()}

    def reference_accuracies(self) -> dict[str, dict[str, float]]:
        """The best cell's accuracy per dataset (each dataset's own optimum: 94.37, 73.51, 47.31 on the
        shipped table) and the all-skip cell's (54.30, 15.61, 16.32), from the table."""
        table = self.table()
        optimum = {d: float(table.accuracies(d).max()) for d in table.lookup(ALL_SKIP)}
        return {"optimum": optimum, "all-skip": self.evaluate(ALL_SKIP)}

    def profile(self, genotype: str) -> dict[str, dict[str, int]]:
        """The benchmark network's parameters and FLOPs per dataset (C = 16, N = 5; CIFAR 32x32,
        ImageNet16-120 16x16)."""
        from .evaluation_network import cell_profile

        return cell_profile(genotype)

    def save_genotype(self, genotype: str, out_dir: str, title: str) -> list[str]:
        """``genotype.json``: the arch string and its benchmark accuracies."""
        record = {"arch": genotype, "benchmark": self.evaluate(genotype), "title": title}
        atomic_write_text(os.path.join(out_dir, GENOTYPE_NAME), json.dumps(record, indent=2) + "\n")
        return [GENOTYPE_NAME]
