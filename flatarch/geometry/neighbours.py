"""Neighbourhoods in a discrete architecture space (paper section 4.1.1).

The **neighbour tree** of a root architecture has the root at level 0; a node at level ``r`` has one
child per radius-1 move whose sites are disjoint from every site touched on the way from the root,
so no move undoes (or re-edits) an earlier one. The **radius-r neighbourhood** is the set of unique
architectures at level ``r``. For NAS-Bench-201 that is exactly the cells at Hamming distance ``r``,
``C(6, r) * 4**r`` of them.

Full trees grow as (number of moves)**r, so :func:`neighbour_tree` is meant for small spaces or
radii; :func:`sample_neighbours` draws ``k`` unique radius-``r`` neighbours by random walks on the
tree (the paper samples 30 per radius in the DARTS space).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from .space import Space


def neighbour_tree(space: Space, root: Hashable, radius: int) -> list[list[Hashable]]:
    """Levels ``0..radius`` of the neighbour tree, each the list of its unique architectures.

    Tree nodes are ``(architecture, touched sites)``; nodes reached by several move orders are
    merged (they have identical subtrees), which keeps the expansion polynomial for fixed radius.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    frontier: dict[tuple[Hashable, frozenset], None] = {(root, frozenset()): None}
    levels = [[root]]
    for _ in range(radius):
        nxt: dict[tuple[Hashable, frozenset], None] = {}
        for arch, touched in frontier:
            for move in space.moves(arch):
                if move.sites.isdisjoint(touched):
                    nxt[(move.arch, touched | move.sites)] = None
        frontier = nxt
        levels.append(list(dict.fromkeys(arch for arch, _ in frontier)))
    return levels


def neighbours(space: Space, root: Hashable, radius: int) -> list[Hashable]:
    """The unique architectures at level ``radius`` of the neighbour tree of ``root``."""
    return neighbour_tree(space, root, radius)[radius]


def random_neighbour(space: Space, root: Hashable, radius: int, rng: np.random.Generator) -> Hashable:
    """One random walk of ``radius`` moves on the neighbour tree (uniform over allowed moves)."""
    arch, touched = root, frozenset()
    for step in range(radius):
        allowed = [m for m in space.moves(arch) if m.sites.isdisjoint(touched)]
        if not allowed:
            raise ValueError(f"no move left at step {step + 1} of a radius-{radius} walk from {root!r}")
        move = allowed[int(rng.integers(len(allowed)))]
        arch, touched = move.arch, touched | move.sites
    return arch


def sample_neighbours(
    space: Space, root: Hashable, radius: int, k: int, seed: int = 0, max_tries: int | None = None
) -> list[Hashable]:
    """``k`` distinct radius-``radius`` neighbours of ``root``, drawn by seeded random walks.

    Deterministic for a given ``seed``. Raises ``ValueError`` when ``k`` distinct neighbours cannot
    be found within ``max_tries`` walks (default ``50 * k + 100``), e.g. when the neighbourhood
    is smaller than ``k``.
    """
    if k < 0 or radius < 1:
        raise ValueError(f"need k >= 0 and radius >= 1, got k={k}, radius={radius}")
    rng = np.random.default_rng(seed)
    max_tries = 50 * k + 100 if max_tries is None else max_tries
    found: dict[Hashable, None] = {}
    for _ in range(max_tries):
        if len(found) == k:
            break
        found[random_neighbour(space, root, radius, rng)] = None
    if len(found) < k:
        raise ValueError(
            f"found only {len(found)} distinct radius-{radius} neighbours in {max_tries} walks; "
            "ask for fewer (k) or a larger radius"
        )
    return list(found)
