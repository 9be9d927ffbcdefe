"""The NAS-Bench-201 network of one cell, as the benchmark trained it (NATS-Bench's topology
setting: C = 16, N = 5 cells per stage), for its parameter count and FLOPs.

Stem ``Conv3x3(3 -> C) + BN``; three stages of ``N`` copies of the cell at ``C``, ``2C``, ``4C``
channels separated by the residual reductions of the search network; ``BN + ReLU``, global
average pooling, ``Linear(4C -> classes)``. Each edge holds only its op (AutoDL-Projects
``xautodl/models/cell_infers/cells.py`` ``InferCell``): ``none`` nothing, ``skip_connect`` the
identity, ``nor_conv_KxK`` ``ReLU-Conv-BN`` with affine BN, ``avg_pool_3x3`` a 3x3 average pooling;
a node is the sum of its incoming edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..blocks import ReLUConvBN
from .encoding import EDGES, OPS, arch_to_sequence
from .ops import AvgPool, ResidualReduction

#: NATS-Bench's topology setting (the size the benchmark's accuracies are for)
CHANNELS, CELLS_PER_STAGE = 16, 5
#: per benchmark dataset: classes and image side (ImageNet16-120 is 16x16)
DATASET_SHAPES: dict[str, tuple[int, int]] = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16-120": (120, 16)}


def _op(name: str, c: int) -> nn.Module | None:
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return AvgPool()
    kernel = int(name[-1])
    return ReLUConvBN(c, c, kernel, 1, kernel // 2, affine=True)


class Cell(nn.Module):
    """One cell: node ``t`` is the sum over its edges ``t <- s`` of ``op(node s)``."""

    def __init__(self, arch: str, c: int):
        super().__init__()
        ops = [OPS[i] for i in arch_to_sequence(arch)]
        self.edges = [(t, s) for (t, s), name in zip(EDGES, ops) if name != "none"]
        self.ops = nn.ModuleList(_op(name, c) for name in ops if name != "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in range(1, 4):
            inputs = [op(nodes[s]) for (t, s), op in zip(self.edges, self.ops) if t == target]
            nodes.append(sum(inputs) if inputs else torch.zeros_like(x))
        return nodes[-1]


class NB201Network(nn.Sequential):
    """The network of cell ``arch`` (an arch string) for ``num_classes`` classes."""

    def __init__(self, arch: str, num_classes: int = 10, channels: int = CHANNELS,
                 cells_per_stage: int = CELLS_PER_STAGE, in_channels: int = 3):
        c = channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers += [Cell(arch, c) for _ in range(cells_per_stage)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
        super().__init__(*layers)


def cell_profile(arch: str, datasets: Sequence[str] = tuple(DATASET_SHAPES)) -> dict[str, dict[str, int]]:
    """Per benchmark dataset (of ``datasets``), ``{"params", "flops", "macs"}`` of the benchmark's
    network of ``arch`` (:func:`flatarch.reference_spaces.profile.profile`)."""
    from ..profile import profile

    shapes = {dataset: DATASET_SHAPES[dataset] for dataset in datasets}
    return {dataset: profile(NB201Network(arch, classes), (3, side, side))
            for dataset, (classes, side) in shapes.items()}
