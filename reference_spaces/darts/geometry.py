"""DARTS plug-in for :mod:`flatarch.geometry` (paper section 4.1.1, SPEC sections 6 and 7).

Encodings of one cell (M = 4 intermediate nodes):

* the **genotype** list ``[(op, input), ...]``, two pairs per intermediate node;
* the **adjacency matrix** ``M x (M + 1)``: entry ``(i, j)`` is ``1 + PRIMITIVES.index(op)`` for the
  edge from node ``j`` (0, 1 = the two cell inputs, ``j >= 2`` = intermediate node ``j - 2``) into
  intermediate node ``i``, 0 for no edge; every row has exactly two non-zero entries, all at
  ``j < i + 2``;
* the **sequence**: the meaningful entries ``(i, j), j < i + 2``, row by row: 2 + 3 + 4 + 5 = 14
  integers, one per edge of the supernet in its usual order.

An architecture for the geometry tools is the pair ``(normal_sequence, reduce_sequence)`` of tuples.
Radius-1 moves, on the normal or the reduction cell:

* **op change**: give an existing edge another op;
* **connection adjustment**: remove one incoming edge of a node and add an edge from another
  predecessor (with any op), so every node keeps exactly two distinct predecessors; one move.

The sites of a move are the ``(cell, edge)`` slots it writes; the neighbour tree never touches a
slot twice, so a radius-``r`` neighbour is exactly ``r`` moves away (:meth:`DartsSpace.distance`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from flatarch.atomic_files import atomic_write_text
from flatarch.geometry.space import Move

from .genotype import PRIMITIVES, Genotype

NUM_NODES = 4  #: intermediate nodes per cell
NUM_CELL_EDGES = sum(i + 2 for i in range(NUM_NODES))  #: 14
#: Position of edge (node i, input 0) in the sequence.
ROW_START = tuple(sum(t + 2 for t in range(i)) for i in range(NUM_NODES))
CELLS = ("normal", "reduce")
#: Ops a move may place: every primitive but ``none`` (a genotype never holds ``none``).
MOVE_OPS = tuple(op for op in PRIMITIVES if op != "none")

#: Published genotypes usable by name (original DARTS paper; SPEC section 6 format).
NAMED_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=[
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ],
        normal_concat=[2, 3, 4, 5],
        reduce=[
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ],
        reduce_concat=[2, 3, 4, 5],
    ),
    "DARTS_V2": Genotype(
        normal=[
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ],
        normal_concat=[2, 3, 4, 5],
        reduce=[
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ],
        reduce_concat=[2, 3, 4, 5],
    ),
}
NAMED_GENOTYPES["DARTS"] = NAMED_GENOTYPES["DARTS_V2"]


def edge_index(node: int, source: int) -> int:
    """Sequence position of the edge ``source -> intermediate node``."""
    if not (0 <= node < NUM_NODES and 0 <= source < node + 2):
        raise ValueError(f"no edge from node {source} into intermediate node {node}")
    return ROW_START[node] + source


# ----------------------------------------------------------------------------------------------
# Conversions


def cell_to_matrix(cell: Sequence[tuple[str, int]]) -> np.ndarray:
    """Genotype cell list -> ``[4, 5]`` int matrix (entry = 1 + op index, 0 = no edge)."""
    cell = [tuple(x) for x in cell]
    if len(cell) != 2 * NUM_NODES:
        raise ValueError(f"a DARTS cell has {2 * NUM_NODES} (op, input) pairs (two per node), got {len(cell)}")
    mat = np.zeros((NUM_NODES, NUM_NODES + 1), dtype=np.int64)
    for k, (op, src) in enumerate(cell):
        node = k // 2
        if op not in PRIMITIVES:
            raise ValueError(f"unknown op {op!r}; valid ops: {', '.join(PRIMITIVES)}")
        src = int(src)
        if not 0 <= src < node + 2:
            raise ValueError(f"node {node} (pair {k}) may take inputs 0..{node + 1}, got {src}")
        if mat[node, src]:
            raise ValueError(f"node {node} takes input {src} twice; each node needs two distinct inputs")
        mat[node, src] = 1 + PRIMITIVES.index(op)
    return mat


def check_matrix(mat: np.ndarray) -> np.ndarray:
    """Validate a cell matrix (shape, entries, two predecessors per row, edges only at j < i + 2)."""
    mat = np.asarray(mat, dtype=np.int64)
    if mat.shape != (NUM_NODES, NUM_NODES + 1):
        raise ValueError(f"a DARTS cell matrix is {NUM_NODES} x {NUM_NODES + 1}, got {mat.shape}")
    if mat.min() < 0 or mat.max() > len(PRIMITIVES):
        raise ValueError(f"matrix entries are 0 (no edge) or 1 + op index in 1..{len(PRIMITIVES)}")
    for i in range(NUM_NODES):
        if np.count_nonzero(mat[i]) != 2 or np.count_nonzero(mat[i, i + 2 :]):
            raise ValueError(f"row {i} must have exactly two non-zero entries, at columns < {i + 2}: {mat[i]}")
    return mat


def matrix_to_cell(mat: np.ndarray) -> list[tuple[str, int]]:
    """Matrix -> genotype cell list (each node's inputs in increasing order)."""
    mat = check_matrix(mat)
    return [(PRIMITIVES[mat[i, j] - 1], int(j)) for i in range(NUM_NODES) for j in np.flatnonzero(mat[i])]


def matrix_to_sequence(mat: np.ndarray) -> tuple[int, ...]:
    """Matrix -> the 14 entries ``(i, j), j < i + 2`` row by row."""
    mat = check_matrix(mat)
    return tuple(int(mat[i, j]) for i in range(NUM_NODES) for j in range(i + 2))


def sequence_to_matrix(seq: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`matrix_to_sequence` (validated)."""
    if len(seq) != NUM_CELL_EDGES:
        raise ValueError(f"a DARTS cell sequence has {NUM_CELL_EDGES} entries, got {len(seq)}")
    mat = np.zeros((NUM_NODES, NUM_NODES + 1), dtype=np.int64)
    for i in range(NUM_NODES):
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
# Genotype files


def genotype_to_dict(genotype: Genotype) -> dict:
    """JSON-ready ``{"normal": [[op, input], ...], "normal_concat": [...], "reduce": ..., ...}``."""
    return {
        "normal": [[op, int(src)] for op, src in genotype.normal],
        "normal_concat": [int(x) for x in genotype.normal_concat],
        "reduce": [[op, int(src)] for op, src in genotype.reduce],
        "reduce_concat": [int(x) for x in genotype.reduce_concat],
    }


def genotype_from_dict(data: dict) -> Genotype:
    missing = [k for k in ("normal", "reduce") if k not in data]
    if missing:
        raise ValueError(
            f"genotype JSON lacks {', '.join(missing)}; expected keys normal, normal_concat, reduce, reduce_concat"
        )
    genotype = Genotype(
        normal=[(str(op), int(src)) for op, src in data["normal"]],
        normal_concat=[int(x) for x in data.get("normal_concat", [2, 3, 4, 5])],
        reduce=[(str(op), int(src)) for op, src in data["reduce"]],
        reduce_concat=[int(x) for x in data.get("reduce_concat", [2, 3, 4, 5])],
    )
    genotype_to_arch(genotype)  # validates
    return genotype


def load_genotype(spec: str) -> Genotype:
    """A genotype from a JSON file path, or a name in :data:`NAMED_GENOTYPES`."""
    if spec in NAMED_GENOTYPES:
        return NAMED_GENOTYPES[spec]
    if not os.path.exists(spec):
        raise ValueError(
            f"--genotype {spec!r} is neither a file nor a known name ({', '.join(NAMED_GENOTYPES)}); "
            'give a JSON file like {"normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5], ...}'
        )
    with open(spec) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{spec} is not valid JSON: {exc}") from exc
    return genotype_from_dict(data)


def save_genotype(genotype: Genotype, path: str) -> None:
    """Write ``genotype`` as JSON atomically (one key per line, pairs inline: readable and diffable)."""
    data = genotype_to_dict(genotype)
    atomic_write_text(path, "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items()) + "\n}\n")


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
        self.entries = tuple(1 + PRIMITIVES.index(op) for op in ops)

    def moves(self, arch) -> Iterable[Move]:
        for c in self.cells:
            seq = arch[c]
            for node in range(NUM_NODES):
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
            for node in range(NUM_NODES):
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
            for node in range(NUM_NODES):
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


def write_neighbours(
    genotype: Genotype,
    out_dir: str,
    radii: Sequence[int] = (1,),
    samples: int = 30,
    seed: int = 0,
    cells: Sequence[str] = CELLS,
) -> dict:
    """Sample ``samples`` distinct radius-r neighbours per radius and write each as a genotype JSON.

    Layout: ``out_dir/root.json``, ``out_dir/radius{r}/neighbour_{i:03d}.json`` and
    ``out_dir/manifest.json`` (root, seed, cells, and per file its radius and move distance).
    Each radius uses seed ``seed + r`` so that adding a radius leaves the others unchanged.
    """
    from flatarch.geometry.neighbours import sample_neighbours
    from flatarch.geometry.report import atomic_write_json

    space = DartsSpace(cells)
    root = genotype_to_arch(genotype)
    # sample everything first: a request that cannot be met writes nothing
    sampled = {r: sample_neighbours(space, root, r, samples, seed=seed + r) for r in radii}
    os.makedirs(out_dir, exist_ok=True)
    save_genotype(genotype, os.path.join(out_dir, "root.json"))
    manifest = {"root": genotype_to_dict(genotype), "seed": seed, "cells": list(cells), "neighbours": []}
    for r, archs in sampled.items():
        os.makedirs(os.path.join(out_dir, f"radius{r}"), exist_ok=True)
        for i, arch in enumerate(archs):
            name = os.path.join(f"radius{r}", f"neighbour_{i:03d}.json")
            g = arch_to_genotype(arch, genotype.normal_concat, genotype.reduce_concat)
            save_genotype(g, os.path.join(out_dir, name))
            manifest["neighbours"].append({"file": name, "radius": r, "distance": space.distance(root, arch)})
    atomic_write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def write_path(genotype: Genotype, target: Genotype, out_dir: str, max_archs: int = 200) -> dict:
    """Write every unique architecture of the path tree from ``genotype`` to ``target``.

    Layout: ``out_dir/path/level{l}_{i:03d}.json`` and ``out_dir/path/manifest.json``. Raises
    ``ValueError`` when the tree holds more than ``max_archs`` architectures (train a sample instead).
    """
    from flatarch.geometry.paths import path_tree
    from flatarch.geometry.report import atomic_write_json

    space = DartsSpace()
    levels = path_tree(space, genotype_to_arch(genotype), genotype_to_arch(target))
    total = sum(len(level) for level in levels)
    if total > max_archs:
        raise ValueError(
            f"the path tree holds {total} architectures (distance {len(levels) - 1}); "
            f"raise --max-path-archs above {total} or choose a closer target"
        )
    sub = os.path.join(out_dir, "path")
    os.makedirs(sub, exist_ok=True)
    manifest = {"distance": len(levels) - 1, "levels": []}
    for level, archs in enumerate(levels):
        names = []
        for i, arch in enumerate(archs):
            name = f"level{level}_{i:03d}.json"
            save_genotype(
                arch_to_genotype(arch, genotype.normal_concat, genotype.reduce_concat),
                os.path.join(sub, name),
            )
            names.append(name)
        manifest["levels"].append(names)
    atomic_write_json(os.path.join(sub, "manifest.json"), manifest)
    return manifest
