"""Shortest paths between two architectures (paper section 4.1.2).

The **path tree** from ``a`` to ``b`` holds every shortest move sequence from ``a`` to ``b``: each
move brings the current architecture one step closer to ``b`` (in NAS-Bench-201: set one differing
edge to ``b``'s op). Level ``l`` is the set of unique architectures ``l`` moves from ``a`` on such a
sequence; level 0 is ``{a}`` and level ``d = distance(a, b)`` is ``{b}``. Because only unique
architectures are kept, the tree is symmetric: level ``l`` from ``a`` equals level ``d - l`` from ``b``.

The **accuracy path** is ``acc(a)``, then for each intermediate level the mean accuracy of its unique
architectures, then ``acc(b)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from .space import Space


def path_tree(space: Space, a: Hashable, b: Hashable) -> list[list[Hashable]]:
    """Levels ``0..d`` of the path tree from ``a`` to ``b`` (lists of unique architectures)."""
    d = space.distance(a, b)
    levels = [[a]]
    for step in range(d):
        nxt: dict[Hashable, None] = {}
        for arch in levels[-1]:
            for child in space.path_moves(arch, b):
                nxt[child] = None
        if not nxt:
            raise RuntimeError(f"space offered no path move at level {step} although distance is {d}")
        levels.append(list(nxt))
    if levels[-1] != [b]:
        raise RuntimeError("the path tree did not end at the target: the space's path_moves are inconsistent")
    return levels


def _as_function(accuracy: Callable[[Hashable], float] | Mapping) -> Callable[[Hashable], float]:
    if isinstance(accuracy, Mapping):
        return accuracy.__getitem__
    return accuracy


def level_accuracies(
    levels: Sequence[Sequence[Hashable]], accuracy: Callable[[Hashable], float] | Mapping
) -> list[np.ndarray]:
    """Accuracy of every unique architecture of every level (float64 arrays)."""
    acc = _as_function(accuracy)
    return [np.asarray([acc(x) for x in level], dtype=np.float64) for level in levels]


def accuracy_path(level_accs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean accuracy per level: ``[acc(a), mean(level 1), ..., mean(level d-1), acc(b)]``."""
    if any(len(x) == 0 for x in level_accs):
        raise ValueError("every path-tree level needs at least one architecture")
    return np.asarray([float(np.mean(x)) for x in level_accs], dtype=np.float64)
