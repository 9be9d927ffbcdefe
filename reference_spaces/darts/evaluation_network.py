"""The network a genotype is trained from scratch as (DARTS evaluation, paper table 5).

Stem (3x3 conv to ``3C``), ``layers`` cells built from the genotype (reductions at
``layers//3`` and ``2*layers//3``), an optional auxiliary head after the second reduction
(its loss weighted 0.4 in training), global pooling and a linear classifier. Within a cell
node ``i = drop_path(op_a(h_a)) + drop_path(op_b(h_b))``; identity ops are never dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ReLUConvBN
from .genotype import Genotype, validate
from .ops import OPS, FactorizedReduce, drop_path


class EvalCell(nn.Module):
    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_prev_prev, c) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.steps = len(pairs) // 2
        self.multiplier = len(self.concat)
        self.indices = [inp for _, inp in pairs]
        self.ops = nn.ModuleList(OPS[name](c, 2 if reduction and inp < 2 else 1, True) for name, inp in pairs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            node = 0
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Classifier on the feature map after the second reduction (8x8 on CIFAR, 4x4 on 16x16
    inputs): pool to 2x2, 1x1 conv to 128, 2x2 conv to 768, linear."""

    def __init__(self, c: int, num_classes: int, spatial: int):
        super().__init__()
        # CIFAR (8x8) uses the original 5x5 stride-3 pooling; other sizes pool adaptively to 2x2.
        pool = (nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False) if spatial == 8
                else nn.AdaptiveAvgPool2d(2))
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), pool,
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class EvaluationNetwork(nn.Module):
    """``forward`` returns ``(logits, aux_logits)``; ``aux_logits`` is ``None`` outside training or
    without the auxiliary head. Set :attr:`drop_path_prob` before each epoch."""

    def __init__(self, genotype: Genotype, num_classes: int = 10, C: int = 36, layers: int = 20,
                 auxiliary: bool = True, in_channels: int = 3, input_size: int = 32, stem_multiplier: int = 3):
        super().__init__()
        genotype = validate(genotype)
        if layers < 3:
            raise ValueError(f"need at least 3 cells (two reductions), got {layers}")
        self.layers = layers
        self.drop_path_prob = 0.0
        self.aux_index = 2 * layers // 3
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, spatial=input_size // 4) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux_logits = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux_logits


def count_parameters(model: nn.Module, include_auxiliary: bool = False) -> int:
    """Parameter count; by default without the auxiliary head, as the DARTS paper counts."""
    return sum(p.numel() for name, p in model.named_parameters()
               if include_auxiliary or not name.startswith("auxiliary_head."))
