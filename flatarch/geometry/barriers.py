"""Accuracy barriers along a path tree (paper section 5.1.1, Eq. 9).

For endpoints ``a, b`` and intermediate architectures ``c`` (path-tree levels ``1..d-1``)::

    B(a, b)       = (acc(a) + acc(b)) / 2 - min_c acc(c)
    B_norm(a, b)  = B(a, b) / ((acc(a) + acc(b)) / 2)

Two variants of the minimum are offered, both in one :class:`AccuracyBarrier`:

* ``min_cell``: over every single intermediate architecture of the path tree (Eq. 9 as written);
* ``min_level_mean``: over the accuracy path's level means (smoother: one bad cell in a level of
  many moves the mean only a little).

A positive barrier means the path dips below the endpoints' mean; a flat path (every ``c`` at the
endpoints' accuracy) has barrier 0; a path whose intermediates all beat the endpoints' mean has a
negative barrier. Paths with no intermediate level (``d <= 1``) have barrier 0 by convention
(nothing lies between the endpoints).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AccuracyBarrier:
    """Both barrier variants, raw (accuracy points) and normalised (fraction of the endpoints' mean)."""

    endpoint_mean: float
    min_cell: float
    min_level_mean: float

    @property
    def raw_min_cell(self) -> float:
        return self.endpoint_mean - self.min_cell

    @property
    def normalised_min_cell(self) -> float:
        return self.raw_min_cell / self.endpoint_mean

    @property
    def raw_min_level_mean(self) -> float:
        return self.endpoint_mean - self.min_level_mean

    @property
    def normalised_min_level_mean(self) -> float:
        return self.raw_min_level_mean / self.endpoint_mean

    def to_dict(self) -> dict[str, float]:
        out = asdict(self)
        for name in (
            "raw_min_cell",
            "normalised_min_cell",
            "raw_min_level_mean",
            "normalised_min_level_mean",
        ):
            out[name] = getattr(self, name)
        return out


def accuracy_barrier(level_accs: Sequence[np.ndarray]) -> AccuracyBarrier:
    """Barrier of a path tree given each level's accuracies (level 0 = ``[acc(a)]``, last = ``[acc(b)]``)."""
    if len(level_accs) < 1 or len(level_accs[0]) != 1 or len(level_accs[-1]) != 1:
        raise ValueError("level_accs must start with [acc(a)] and end with [acc(b)] (one value each)")
    acc_a, acc_b = float(level_accs[0][0]), float(level_accs[-1][0])
    endpoint_mean = (acc_a + acc_b) / 2
    if endpoint_mean == 0:
        raise ValueError("the normalised barrier divides by the endpoints' mean accuracy, which is 0")
    inner = [np.asarray(x, dtype=np.float64) for x in level_accs[1:-1]]
    if not inner:
        return AccuracyBarrier(endpoint_mean, endpoint_mean, endpoint_mean)
    return AccuracyBarrier(
        endpoint_mean=endpoint_mean,
        min_cell=float(min(x.min() for x in inner)),
        min_level_mean=float(min(x.mean() for x in inner)),
    )
