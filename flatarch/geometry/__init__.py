"""Geometry of discrete architecture spaces (paper section 4.1).

Space-generic tools; a space plugs in through the small :class:`Space` protocol (radius-1 moves with
the sites they touch, moves towards a target, distance). Plug-ins:
``flatarch.reference_spaces.nb201.geometry`` (exact, vectorised) and
``flatarch.reference_spaces.darts.geometry`` (sampled).
"""

from .barriers import AccuracyBarrier, accuracy_barrier
from .locality import (
    KSResult,
    Tier,
    abs_differences,
    ks_test,
    random_pair_differences,
    tiers_around,
    tiers_from_thresholds,
)
from .neighbours import neighbour_tree, neighbours, random_neighbour, sample_neighbours
from .paths import accuracy_path, level_accuracies, path_tree
from .space import Move, Space

__all__ = [
    "AccuracyBarrier",
    "KSResult",
    "Move",
    "Space",
    "Tier",
    "abs_differences",
    "accuracy_barrier",
    "accuracy_path",
    "ks_test",
    "level_accuracies",
    "neighbour_tree",
    "neighbours",
    "path_tree",
    "random_neighbour",
    "random_pair_differences",
    "sample_neighbours",
    "tiers_around",
    "tiers_from_thresholds",
]
