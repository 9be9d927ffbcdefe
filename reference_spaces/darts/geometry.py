"""DARTS plug-in for :mod:`flatarch.geometry` (paper section 4.1.1).

Encodings of one cell (M = :data:`~.genotype.STEPS` = 4 intermediate nodes):

* the **genotype** list ``[(op, input), ...]``, two pairs per intermediate node (:mod:`.genotype`);
* the **adjacency matrix** ``M x (M + 1)``: entry ``(i, j)`` is ``1 + GENOTYPE_OPS.index(op)`` for the
  edge from node ``j`` (0, 1 = the two cell inputs, ``j >= 2`` = intermediate node ``j - 2``) into
  intermediate node ``i``, 0 for no edge; every row has exactly two non-zero entries, all at
  ``j < i + 2``;
* the **sequence**: the meaningful entries ``(i, j), j < i + 2``, row by row: 2 + 3 + 4 + 5 = 14
  integers, one per edge of the supernet in its usual order (:func:`~.genotype.edge_index`).

An architecture for the geometry tools is the pair ``(normal_sequence, reduce_sequence)`` of tuples.
Radius-1 moves, on the normal or the reduction cell:

* **op change**: give an existing edge another op;
* **connection adjustment**: remove one incoming edge of a node and add an edge from another
  predecessor (with any op), so every node keeps exactly two distinct predecessors; one move.

The sites of a move are the ``(cell, edge)`` slots it writes; the neighbour tree never touches a
slot twice, so a radius-``r`` neighbour is exactly ``r`` moves away (:meth:`DartsSpace.distance`).
Genotype files are read and written by :mod:`.genotype` (``load``, ``save``, ``to_json``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flatarch.geometry.neighbours import sample_neighbours
from flatarch.geometry.paths import path_tree
from flatarch.geometry.report import atomic_write_json
from flatarch.geometry.space import Move

from .genotype import GENOTYPE_OPS, STEPS, Genotype, edge_index, num_edges, save, to_json

#: Position of edge (node i, input 0) in the sequence.
ROW_START = tuple(edge_index(i, 0) for i in range(STEPS))
CELLS = ("normal", "reduce")
#: Ops a move may place: the ops a genotype may hold (never ``none``).
MOVE_OPS = GENOTYPE_OPS


# ----------------------------------------------------------------------------------------------
# Conversions


def cell_to_matrix(cell: Sequence[tuple[str, int]]) -> np.ndarray:
    """Genotype cell list -> ``[4, 5]`` int matrix (entry = 1 + op index, 0 = no edge)."""
    cell = [tuple(x) for x in cell]
    if len(cell) != 2 * STEPS:
        raise ValueError(f"a DARTS cell has {2 * STEPS} (op, input) pairs (two per node), got {len(cell)}")
    mat = np.zeros((STEPS, STEPS + 1), dtype=np.int64)
    for k, (op, src) in enumerate(cell):
        node = k // 2
        if op not in GENOTYPE_OPS:
            raise ValueError(f"unknown op {op!r}; valid ops: {', '.join(GENOTYPE_OPS)}")
        src = int(src)
        if not 0 <= src < node + 2:
            raise ValueError(f"node {node} (pair {k}) may take inputs 0..{node + 1}, got {src}")
        if mat[node, src]:
            raise ValueError(f"node {node} takes input {src} twice; each node needs two distinct inputs")
        mat[node, src] = 1 + GENOTYPE_OPS.index(op)
    return mat


def check_matrix(mat: np.ndarray) -> np.ndarray:
    """Validate a cell matrix (shape, entries, two predecessors per row, edges only at j < i + 2)."""
    mat = np.asarray(mat, dtype=np.int64)
    if mat.shape != (STEPS, STEPS + 1):
        raise ValueError(f"a DARTS cell matrix is {STEPS} x {STEPS + 1}, got {mat.shape}")
    if mat.min() < 0 or mat.max() > len(GENOTYPE_OPS):
        raise ValueError(f"matrix entries are 0 (no edge) or 1 + op index in 1..{len(GENOTYPE_OPS)}")
    for i in range(STEPS):
        if np.count_nonzero(mat[i]) != 2 or np.count_nonzero(mat[i, i + 2 :]):
            raise ValueError(f"row {i} must have exactly two non-zero entries, at columns < {i + 2}: {mat[i]}")
    return mat


def matrix_to_cell(mat: np.ndarray) -> list[tuple[str, int]]:
    """Matrix -> genotype cell list (each node's inputs in increasing order)."""
    mat = check_matrix(mat)
    return [(GENOTYPE_OPS[mat[i, j] - 1], int(j)) for i in range(STEPS) for j in np.flatnonzero(mat[i])]


def matrix_to_sequence(mat: np.ndarray) -> tuple[int, ...]:
    """Matrix -> the 14 entries ``(i, j), j < i + 2`` row by row."""
    mat = check_matrix(mat)
    return tuple(int(mat[i, j]) for i in range(STEPS) for j in range(i + 2))


def sequence_to_matrix(seq: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`matrix_to_sequence` (validated)."""
    if len(seq) != num_edges():
        raise ValueError(f"a DARTS cell sequence has {num_edges()} entries, got {len(seq)}")
    mat = np.zeros((STEPS, STEPS + 1), dtype=np.int64)
    for i in range(STEPS):
        mat[i, : i + 2] = seq[ROW_START[i] : ROW_START[i] + i + 2]
    return check_matrix(mat)


def genotype_to_arch(genotype: Genotype) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Genotype -> ``(normal_sequence, reduce_sequence)``, the geometry tools' architecture."""
    return (
        matrix_to_sequence(cell_to_matrix(genotype.normal)),
        matrix_to_sequence(cell_to_matrix(genotype.reduce)),
    )


def arch_to_genotype(arch, normal_concat=(2, 3, 4, 5), reduce_concat=(2, 3, 4, 5)) -> Genotype:
    """``(normal_sequence, reduce_sequence)`` -> Genotype."""
    normal, reduce = arch
    return Genotype(
        normal=matrix_to_cell(sequence_to_matrix(normal)),
        normal_concat=list(normal_concat),
        reduce=matrix_to_cell(sequence_to_matrix(reduce)),
        reduce_concat=list(reduce_concat),
    )


# ----------------------------------------------------------------------------------------------
# The space


def _inputs(seq: Sequence[int], node: int) -> dict[int, int]:
    """``{input: entry}`` of the edges into ``node``."""
    start = ROW_START[node]
    return {j: seq[start + j] for j in range(node + 2) if seq[start + j]}


class DartsSpace:
    """:class:`flatarch.geometry.Space` over ``(normal_sequence, reduce_sequence)``.

    Args:
        cells: which matrices moves may modify: ``("normal", "reduce")`` (default), or one of them.
        ops: the ops a move may place (default every primitive but ``none``).
    """

    def __init__(self, cells: Sequence[str] = CELLS, ops: Sequence[str] = MOVE_OPS):
        bad = [c for c in cells if c not in CELLS]
        if bad or not cells:
            raise ValueError(f"cells must be a non-empty subset of {CELLS}, got {tuple(cells)}")
        self.cells = tuple(CELLS.index(c) for c in cells)
        self.entries = tuple(1 + GENOTYPE_OPS.index(op) for op in ops)

    def moves(self, arch) -> Iterable[Move]:
        for c in self.cells:
            seq = arch[c]
            for node in range(STEPS):
                inputs = _inputs(seq, node)
                free = [k for k in range(node + 2) if k not in inputs]
                for j, entry in inputs.items():
                    e_j = ROW_START[node] + j
                    for new in self.entries:  # op change
                        if new != entry:
                            yield Move(self._set(arch, c, {e_j: new}), frozenset({(c, e_j)}))
                    for k in free:  # connection adjustment j -> k
                        e_k = ROW_START[node] + k
                        for new in self.entries:
                            yield Move(self._set(arch, c, {e_j: 0, e_k: new}), frozenset({(c, e_j), (c, e_k)}))

    def path_moves(self, arch, target) -> Iterable[Hashable]:
        for c in range(len(CELLS)):
            seq, tgt = arch[c], target[c]
            for node in range(STEPS):
                have, want = _inputs(seq, node), _inputs(tgt, node)
                for j, entry in have.items():
                    e_j = ROW_START[node] + j
                    if j in want:
                        if want[j] != entry:
                            yield self._set(arch, c, {e_j: want[j]})
                    else:
                        for k in want:
                            if k not in have:
                                yield self._set(arch, c, {e_j: 0, ROW_START[node] + k: want[k]})

    def distance(self, a, b) -> int:
        """Per node: inputs of ``a`` missing from ``b`` (one adjustment each) plus shared inputs
        with different ops (one op change each), summed over both cells."""
        total = 0
        for c in range(len(CELLS)):
            for node in range(STEPS):
                ia, ib = _inputs(a[c], node), _inputs(b[c], node)
                total += sum(1 for j in ia if j not in ib) + sum(1 for j in ia if j in ib and ia[j] != ib[j])
        return total

    @staticmethod
    def _set(arch, cell: int, changes: dict[int, int]):
        seq = list(arch[cell])
        for pos, value in changes.items():
            seq[pos] = value
        out = list(arch)
        out[cell] = tuple(seq)
        return tuple(out)


# ----------------------------------------------------------------------------------------------
# Writing neighbours and paths to train


@dataclass(frozen=True)
class NeighbourSample:
    """Sampled neighbours of ``root``: ``by_radius[r]`` lists distinct radius-``r`` architectures."""

    root: Genotype
    seed: int
    cells: tuple[str, ...]
    by_radius: dict[int, list]


def neighbour_bound(genotype: Genotype, radius: int, cells: Sequence[str] = CELLS) -> int:
    """How many distinct radius-``radius`` neighbours ``genotype`` can have: exactly the number of
    its radius-1 moves' results for ``radius`` 1 (264 for a genotype whose two cells use every node's
    full choice), and for larger radii at most ``C(n1, radius)``, since a radius-r neighbour is the
    root changed by ``radius`` of its own moves at distinct slots."""
    space = DartsSpace(cells)
    n1 = len({move.arch for move in space.moves(genotype_to_arch(genotype))})
    return n1 if radius == 1 else math.comb(n1, radius)


def sample_neighbour_genotypes(
    genotype: Genotype, radii: Sequence[int] = (1,), samples: int = 30, seed: int = 0, cells: Sequence[str] = CELLS
) -> NeighbourSample:
    """``samples`` distinct radius-r neighbours of ``genotype`` per radius (the paper samples 30,
    section 5.1). Radius ``r`` uses seed ``seed + r`` so that adding a radius leaves the others
    unchanged. Raises ``ValueError`` when a radius has fewer distinct neighbours than asked."""
    space, root = DartsSpace(cells), genotype_to_arch(genotype)
    by_radius = {r: sample_neighbours(space, root, r, samples, seed=seed + r) for r in radii}
    return NeighbourSample(genotype, seed, tuple(cells), by_radius)


def path_tree_genotypes(genotype: Genotype, target: Genotype, max_archs: int = 200) -> list[list]:
    """Levels of the path tree from ``genotype`` to ``target`` (paper section 4.1.2); raises
    ``ValueError`` when it holds more than ``max_archs`` architectures (train a sample instead)."""
    levels = path_tree(DartsSpace(), genotype_to_arch(genotype), genotype_to_arch(target))
    total = sum(len(level) for level in levels)
    if total > max_archs:
        raise ValueError(
            f"the path tree holds {total} architectures (distance {len(levels) - 1}); "
            f"raise --max-path-archs to {total} or choose a closer --target"
        )
    return levels


def _save_arch(arch, like: Genotype, path: str) -> None:
    """Write ``arch`` as a genotype file, with the concat lists of ``like``."""
    save(arch_to_genotype(arch, like.normal_concat, like.reduce_concat), path)


def write_neighbours(sample: NeighbourSample, out_dir: str) -> dict:
    """Write each sampled neighbour as a genotype JSON to train with ``flatarch train --genotype``.

    Layout: ``out_dir/root.json``, ``out_dir/radius{r}/neighbour_{i:03d}.json`` and
    ``out_dir/manifest.json`` (root, seed, cells, and per file its radius and move distance).
    """
    root = genotype_to_arch(sample.root)
    save(sample.root, os.path.join(out_dir, "root.json"))
    manifest = {"root": to_json(sample.root), "seed": sample.seed, "cells": list(sample.cells), "neighbours": []}
    for r, archs in sample.by_radius.items():
        for i, arch in enumerate(archs):
            name = os.path.join(f"radius{r}", f"neighbour_{i:03d}.json")
            _save_arch(arch, sample.root, os.path.join(out_dir, name))
            manifest["neighbours"].append({"file": name, "radius": r, "distance": DartsSpace().distance(root, arch)})
    atomic_write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def write_path(genotype: Genotype, levels: Sequence[Sequence], out_dir: str) -> dict:
    """Write every architecture of a path tree (:func:`path_tree_genotypes`) as a genotype JSON.

    Layout: ``out_dir/path/level{l}_{i:03d}.json`` and ``out_dir/path/manifest.json``.
    """
    sub = os.path.join(out_dir, "path")
    manifest = {"distance": len(levels) - 1, "levels": []}
    for level, archs in enumerate(levels):
        names = [f"level{level}_{i:03d}.json" for i in range(len(archs))]
        for name, arch in zip(names, archs):
            _save_arch(arch, genotype, os.path.join(sub, name))
        manifest["levels"].append(names)
    atomic_write_json(os.path.join(sub, "manifest.json"), manifest)
    return manifest
