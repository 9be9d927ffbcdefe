"""NAS-Bench-201 plug-in for :mod:`flatarch.geometry`: exact, vectorised neighbourhoods and paths.

A cell is a sequence of 6 op indices, or its base-5 **code** (see :mod:`.encoding`); arrays over the
whole space are indexed by code. A radius-1 move sets one edge to another op (24 moves), so the
radius-``r`` neighbourhood is the set of cells at Hamming distance ``r``: ``C(6, r) * 4**r`` cells
(24, 240, 1280 for r = 1, 2, 3). It is generated combinatorially: for each choice of ``r`` edges and
each choice of non-zero shifts ``k_e in {1..4}``, the neighbour's digits are ``(d_e + k_e) mod 5``,
and its code is ``code + sum_e ((d_e + k_e) mod 5 - d_e) * 5**(5 - e)``: pure integer arithmetic
on arrays, with no scan over the 15,625 cells.

The benchmark's row index is not the code; callers convert through a benchmark table
(``BenchmarkTable.index_of_code`` / ``code_of_index``) before using the paper's index pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from flatarch.geometry.barriers import AccuracyBarrier, accuracy_barrier
from flatarch.geometry.locality import KSResult, Tier, abs_differences, ks_test, random_pair_differences
from flatarch.geometry.paths import accuracy_path
from flatarch.geometry.report import KSRow
from flatarch.geometry.space import Move

from .encoding import NUM_ARCHS, NUM_EDGES, NUM_OPS

#: Place value of each edge's digit in the code (first edge most significant).
POW5 = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1, dtype=np.int64)

#: The paper's reference accuracies (test, %) of models A, B, C per dataset (paper section 5.1.1, fig. 7).
PAPER_REFERENCE_ACCURACIES: dict[str, dict[str, float]] = {
    "cifar10": {"A": 94.3, "B": 85.86, "C": 75.44},
    "cifar100": {"A": 72.30, "B": 65.19, "C": 55.88},
    "imagenet16-120": {"A": 45.53, "B": 36.41, "C": 27.26},
}

#: The authors' path pairs of paper fig. 7 (model, radius-3 neighbour of similar accuracy; section
#: 5.1.1) as 0-based benchmark indices (row order of the benchmark, NOT codes).
PAPER_PAIRS: dict[str, dict[str, tuple[int, int]]] = {
    "cifar10": {"A": (81, 1459), "B": (0, 163), "C": (40, 12094)},
    "cifar100": {"A": (81, 11711), "B": (31, 7680), "C": (146, 4461)},
    "imagenet16-120": {"A": (65, 2246), "B": (17, 5845), "C": (2, 348)},
}


def codes_to_digits(codes: np.ndarray | int) -> np.ndarray:
    """``[n]`` codes -> ``[n, 6]`` op indices (int64)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= NUM_ARCHS):
        raise ValueError(f"NAS-Bench-201 codes are in [0, {NUM_ARCHS - 1}]")
    return (codes[..., None] // POW5) % NUM_OPS


def neighbourhood_size(radius: int) -> int:
    """``C(6, r) * 4**r``."""
    from math import comb

    return comb(NUM_EDGES, radius) * (NUM_OPS - 1) ** radius


@cache
def _moves(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge subsets ``[C(6,r), r]`` and non-zero digit shifts ``[4**r, r]``."""
    combos = list(itertools.combinations(range(NUM_EDGES), radius))
    sites = np.array(combos, dtype=np.int64).reshape(len(combos), radius)
    products = list(itertools.product(range(1, NUM_OPS), repeat=radius))
    shifts = np.array(products, dtype=np.int64).reshape(len(products), radius)
    return sites, shifts


def neighbour_codes(codes: np.ndarray | int, radius: int) -> np.ndarray:
    """Codes of the radius-``radius`` neighbours: ``[n, C(6,r) * 4**r]`` for ``n`` input codes.

    Row ``i`` lists every cell at Hamming distance ``radius`` from ``codes[i]`` exactly once.
    A scalar input gives a 1-D array.
    """
    if not 0 <= radius <= NUM_EDGES:
        raise ValueError(f"radius must be in [0, {NUM_EDGES}], got {radius}")
    scalar = np.ndim(codes) == 0
    codes = np.atleast_1d(np.asarray(codes, dtype=np.int64))
    digits = codes_to_digits(codes)
    sites, shifts = _moves(radius)
    per_subset = len(shifts)
    out = np.empty((len(codes), len(sites) * per_subset), dtype=np.int64)
    for s, edges in enumerate(sites):
        old = digits[:, edges]  # [n, r]
        new = (old[:, None, :] + shifts[None]) % NUM_OPS  # [n, 4**r, r]
        out[:, s * per_subset : (s + 1) * per_subset] = codes[:, None] + ((new - old[:, None, :]) * POW5[edges]).sum(-1)
    return out[0] if scalar else out


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Number of differing edges between codes (broadcasting)."""
    return (codes_to_digits(a) != codes_to_digits(b)).sum(-1)


def path_levels(code_a: int, code_b: int) -> list[np.ndarray]:
    """Path tree from ``a`` to ``b`` as code arrays per level (level ``l`` = the ``C(d, l)`` cells
    equal to ``b`` on ``l`` of the ``d`` differing edges and to ``a`` elsewhere)."""
    da, db = codes_to_digits(code_a), codes_to_digits(code_b)
    differing = np.flatnonzero(da != db)
    step = (db - da) * POW5  # code change when one edge takes b's op
    levels = []
    for level in range(len(differing) + 1):
        combos = list(itertools.combinations(differing, level))
        subsets = np.array(combos, dtype=np.int64).reshape(len(combos), level)
        levels.append(np.sort(int(code_a) + step[subsets].sum(-1)))
    return levels


class NB201Space:
    """:class:`flatarch.geometry.Space` over sequences (tuples of 6 op indices); sites are edges."""

    def moves(self, arch: Sequence[int]) -> Iterable[Move]:
        arch = tuple(arch)
        for edge in range(NUM_EDGES):
            for op in range(NUM_OPS):
                if op != arch[edge]:
                    yield Move(arch[:edge] + (op,) + arch[edge + 1 :], frozenset((edge,)))

    def path_moves(self, arch: Sequence[int], target: Sequence[int]) -> Iterable[Hashable]:
        arch, target = tuple(arch), tuple(target)
        for edge in range(NUM_EDGES):
            if arch[edge] != target[edge]:
                yield arch[:edge] + (target[edge],) + arch[edge + 1 :]

    def distance(self, a: Sequence[int], b: Sequence[int]) -> int:
        return sum(x != y for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------
# Analyses on an accuracy array indexed by code


def _check_acc(acc: np.ndarray) -> np.ndarray:
    acc = np.asarray(acc, dtype=np.float64)
    if acc.shape != (NUM_ARCHS,):
        raise ValueError(f"accuracies must be indexed by code, shape ({NUM_ARCHS},); got {acc.shape}")
    return acc


@dataclass(frozen=True)
class NeighbourhoodStats:
    """Per-cell statistics of the radius-``radius`` neighbourhood (arrays indexed by code)."""

    radius: int
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean_abs_diff: np.ndarray  # mean over neighbours of |acc(cell) - acc(neighbour)|


def neighbourhood_stats(
    acc: np.ndarray, radii: Sequence[int] = (1, 2, 3), chunk: int = 2048
) -> list[NeighbourhoodStats]:
    """Whole-space analysis: every cell's radius-r neighbourhood, vectorised in chunks of cells."""
    acc = _check_acc(acc)
    out = []
    for r in radii:
        mean, lo, hi, mad = (np.empty(NUM_ARCHS) for _ in range(4))
        for start in range(0, NUM_ARCHS, chunk):
            codes = np.arange(start, min(start + chunk, NUM_ARCHS))
            nb = acc[neighbour_codes(codes, r)]
            mean[codes], lo[codes], hi[codes] = nb.mean(1), nb.min(1), nb.max(1)
            mad[codes] = np.abs(nb - acc[codes, None]).mean(1)
        out.append(NeighbourhoodStats(r, mean, lo, hi, mad))
    return out


@dataclass(frozen=True)
class TierRadiusLocality:
    """Locality of one tier at one radius (neighbours pooled over the tier's reference cells)."""

    tier: Tier
    radius: int
    n_refs: int
    neighbour_acc: np.ndarray  # [n_refs * size] pooled neighbour accuracies (with repeats)
    abs_diff: np.ndarray  # |acc(ref) - acc(neighbour)|, same length
    ks_vs_space: KSResult  # neighbour accuracies vs whole space
    ks_diff_vs_random: KSResult  # |diff| vs random-pair |diff|


@dataclass(frozen=True)
class Locality:
    acc: np.ndarray
    tiers: list[Tier]
    radii: tuple[int, ...]
    random_abs_diff: np.ndarray
    cells: list[TierRadiusLocality]

    def ks_rows(self, dataset: str) -> list[KSRow]:
        """Table-8 rows of this analysis."""
        return [
            KSRow(dataset, c.tier.name, c.tier.low, c.tier.high, c.radius, c.n_refs, c.ks_vs_space) for c in self.cells
        ]

    def summary(self) -> dict:
        """JSON-ready per (tier, radius) summary (no raw samples)."""
        out = {
            "random_pairs": {
                "n": int(self.random_abs_diff.size),
                "mean_abs_diff": float(self.random_abs_diff.mean()),
                "median_abs_diff": float(np.median(self.random_abs_diff)),
            },
            "tiers": {t.name: {"low": t.low, "high": t.high} for t in self.tiers},
            "cells": [],
        }
        for c in self.cells:
            has = c.abs_diff.size > 0
            out["cells"].append(
                {
                    "tier": c.tier.name,
                    "radius": c.radius,
                    "n_refs": c.n_refs,
                    "n_neighbours": int(c.neighbour_acc.size),
                    "mean_neighbour_acc": float(c.neighbour_acc.mean()) if has else None,
                    "mean_abs_diff": float(c.abs_diff.mean()) if has else None,
                    "median_abs_diff": float(np.median(c.abs_diff)) if has else None,
                    "ks_vs_space": {"statistic": c.ks_vs_space.statistic, "pvalue": c.ks_vs_space.pvalue},
                    "ks_abs_diff_vs_random_pairs": {
                        "statistic": c.ks_diff_vs_random.statistic,
                        "pvalue": c.ks_diff_vs_random.pvalue,
                    },
                }
            )
        return out

    def get(self, tier: str, radius: int) -> TierRadiusLocality:
        for cell in self.cells:
            if cell.tier.name == tier and cell.radius == radius:
                return cell
        raise KeyError(f"no tier {tier!r} at radius {radius}")


def locality(
    acc: np.ndarray,
    tiers: Sequence[Tier],
    radii: Sequence[int] = (1, 2, 3),
    n_random_pairs: int = 100_000,
    seed: int = 0,
) -> Locality:
    """Per tier and radius: pooled neighbour accuracies, ``|acc(ref) - acc(neighbour)|``, and KS tests
    against the whole space (accuracies) and against random pairs (differences)."""
    acc = _check_acc(acc)
    random_diff = random_pair_differences(acc, n_random_pairs, seed)
    cells = []
    for tier in tiers:
        refs = tier.members(acc)
        for r in radii:
            nb_acc = acc[neighbour_codes(refs, r)] if len(refs) else np.empty((0, neighbourhood_size(r)))
            diff = abs_differences(acc[refs], nb_acc)
            cells.append(
                TierRadiusLocality(
                    tier, r, len(refs), nb_acc.ravel(), diff, ks_test(nb_acc, acc), ks_test(diff, random_diff)
                )
            )
    return Locality(acc, list(tiers), tuple(radii), random_diff, cells)


# ----------------------------------------------------------------------------------------------
# Paths and barriers


@dataclass(frozen=True)
class PathResult:
    """Path tree between two cells, its accuracy path and barrier (codes; levels in order a -> b)."""

    code_a: int
    code_b: int
    levels: list[np.ndarray]
    level_accs: list[np.ndarray]
    accuracy_path: np.ndarray
    barrier: AccuracyBarrier

    def to_dict(self) -> dict:
        from .encoding import code_to_arch

        return {
            "a": code_to_arch(self.code_a),
            "b": code_to_arch(self.code_b),
            "distance": len(self.levels) - 1,
            "accuracy_path": self.accuracy_path.tolist(),
            "levels": [
                [{"arch": code_to_arch(int(c)), "accuracy": float(x)} for c, x in zip(codes, accs)]
                for codes, accs in zip(self.levels, self.level_accs)
            ],
            "barrier": self.barrier.to_dict(),
        }


def path_between(acc: np.ndarray, code_a: int, code_b: int) -> PathResult:
    """Path tree, accuracy path and barrier (both variants) between cells ``a`` and ``b``."""
    acc = _check_acc(acc)
    levels = path_levels(code_a, code_b)
    level_accs = [acc[codes] for codes in levels]
    return PathResult(
        int(code_a), int(code_b), levels, level_accs, accuracy_path(level_accs), accuracy_barrier(level_accs)
    )


def similar_neighbour(acc: np.ndarray, code: int, radius: int = 3, tolerance: float = 1.0) -> int | None:
    """The radius-``radius`` neighbour closest in accuracy to ``code`` if within ``tolerance`` points,
    else ``None`` (ties: smallest code)."""
    acc = _check_acc(acc)
    nb = np.sort(neighbour_codes(int(code), radius))
    gap = np.abs(acc[nb] - acc[code])
    best = int(np.argmin(gap))
    return int(nb[best]) if gap[best] <= tolerance else None


def auto_pair(acc: np.ndarray, reference: float, radius: int = 3, tolerance: float = 1.0) -> tuple[int, int]:
    """A model near ``reference`` accuracy and a radius-``radius`` neighbour within ``tolerance``.

    Tries cells in order of ``|acc - reference|`` and returns the first with such a neighbour.
    """
    acc = _check_acc(acc)
    for code in np.argsort(np.abs(acc - reference), kind="stable"):
        partner = similar_neighbour(acc, int(code), radius, tolerance)
        if partner is not None:
            return int(code), partner
    raise ValueError(f"no cell has a radius-{radius} neighbour within {tolerance} points")


def paper_pair_codes(index_to_code: Mapping[int, int] | np.ndarray, dataset: str) -> dict[str, tuple[int, int]]:
    """The paper's A/B/C pairs for ``dataset`` converted from benchmark indices to codes."""
    if dataset not in PAPER_PAIRS:
        raise ValueError(f"no paper pairs for {dataset!r}; datasets: {', '.join(PAPER_PAIRS)}")
    return {t: (int(index_to_code[a]), int(index_to_code[b])) for t, (a, b) in PAPER_PAIRS[dataset].items()}
