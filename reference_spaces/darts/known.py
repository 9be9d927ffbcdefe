"""The DARTS genotype record and the published genotypes, by name.

As in the original repositories' ``genotypes.py`` (``cnn/genotypes.py`` of quark0/darts,
``genotypes.py`` of yuhuixu1993/PC-DARTS), the ``Genotype`` record and the published genotypes
live together; this module imports nothing from flatarch, so :mod:`.genotype` can look names up
here without an import cycle. Two ``(op, input)`` pairs per intermediate node, in node order;
inputs 0 and 1 are the two previous cells, input ``k >= 2`` is intermediate node ``k - 2``.
"""

from __future__ import annotations

from collections import namedtuple

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

_CONCAT = [2, 3, 4, 5]

#: DARTS (first order), Liu et al. 2019.
DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=_CONCAT,
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=_CONCAT,
)

#: DARTS (second order), Liu et al. 2019: 2.76% CIFAR-10 test error, 3.3M parameters.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=_CONCAT,
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=_CONCAT,
)

#: PC-DARTS searched on CIFAR-10, Xu et al. 2020.
PC_DARTS = Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
    normal_concat=_CONCAT,
    reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    reduce_concat=_CONCAT,
)

#: PC-DARTS searched on ImageNet, Xu et al. 2020.
PC_DARTS_IMAGENET = Genotype(
    normal=[("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4)],
    normal_concat=_CONCAT,
    reduce=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
            ("sep_conv_3x3", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 3)],
    reduce_concat=_CONCAT,
)

#: name -> genotype (names upper case; :func:`known_genotype` also accepts ``darts-v2`` style spellings).
KNOWN_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "PC_DARTS": PC_DARTS,
    "PCDARTS": PC_DARTS,
    "PC_DARTS_IMAGENET": PC_DARTS_IMAGENET,
}


def known_genotype(name: str) -> Genotype | None:
    """The published genotype called ``name`` (any case, ``-`` or ``_``), or ``None``."""
    return KNOWN_GENOTYPES.get(name.strip().upper().replace("-", "_"))
