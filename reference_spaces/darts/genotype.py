"""The DARTS genotype, in the original repositories' format.

``Genotype(normal=[(op, input), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])``:
two ``(op, input)`` pairs per intermediate node, in node order; inputs 0 and 1 are the two
previous cells, input ``k >= 2`` is intermediate node ``k - 2``.
"""

from __future__ import annotations

from collections import namedtuple

#: The 8 candidate ops, in alpha column order.
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
