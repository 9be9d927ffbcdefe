"""Encodings of NAS-Bench-201 cells.

A cell has 4 nodes and 6 edges ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`` (node 3 is the output).
Three equivalent encodings are used throughout flatarch:

* the **arch string** of the benchmark, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``;
* the **sequence**, a tuple of 6 op indices (into :data:`OPS`) in the edge order above;
* the **code**, the sequence read as a base-5 number (first edge most significant), an integer
  in ``[0, 15625)`` that vectorised code uses to address arrays over the whole space.

The code is *not* the benchmark's own index: NAS-Bench-201 lists its cells in an order of its
own. A benchmark table (:mod:`flatarch.reference_spaces.nb201.benchmark`) maps between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: ``(target, source)`` for each edge, in sequence order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_OPS = len(OPS)
NUM_EDGES = len(EDGES)
NUM_ARCHS = NUM_OPS**NUM_EDGES

_OP_INDEX = {name: i for i, name in enumerate(OPS)}


def _check_sequence(seq: Sequence[int]) -> tuple[int, ...]:
    seq = tuple(int(x) for x in seq)
    if len(seq) != NUM_EDGES or any(not 0 <= x < NUM_OPS for x in seq):
        raise ValueError(
            f"a NAS-Bench-201 sequence has {NUM_EDGES} op indices in [0, {NUM_OPS - 1}]; got {seq!r}"
        )
    return seq


def sequence_to_arch(seq: Sequence[int]) -> str:
    """``(3, 3, 3, 3, 3, 3)`` -> ``'|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|...|'``."""
    seq = _check_sequence(seq)
    nodes = []
    for target in (1, 2, 3):
        parts = [f"{OPS[op]}~{src}" for (t, src), op in zip(EDGES, seq) if t == target]
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def arch_to_sequence(arch: str) -> tuple[int, ...]:
    """Parse a benchmark arch string into its op-index sequence (strict: every edge once)."""
    if not isinstance(arch, str):
        raise TypeError(f"an arch string is a str, got {type(arch).__name__}")
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise ValueError(
            f"not a NAS-Bench-201 arch string (expected 3 '+'-separated nodes): {arch!r}. "
            "Example: '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'"
        )
    by_edge: dict[tuple[int, int], int] = {}
    for target, node in enumerate(nodes, start=1):
        tokens = [t for t in node.split("|") if t]
        if len(tokens) != target:
            raise ValueError(f"node {target} of {arch!r} must have {target} inputs, has {len(tokens)}")
        for token in tokens:
            op, _, src = token.partition("~")
            if op not in _OP_INDEX:
                raise ValueError(f"unknown op {op!r} in {arch!r}; valid ops: {', '.join(OPS)}")
            if not src.isdigit() or int(src) >= target or (target, int(src)) in by_edge:
                raise ValueError(f"bad input node in {token!r} of {arch!r}")
            by_edge[(target, int(src))] = _OP_INDEX[op]
    return tuple(by_edge[e] for e in EDGES)


def sequence_to_code(seq: Sequence[int]) -> int:
    """The sequence read as a base-5 number (not the benchmark's index)."""
    code = 0
    for op in _check_sequence(seq):
        code = code * NUM_OPS + op
    return code


def code_to_sequence(code: int) -> tuple[int, ...]:
    """Inverse of :func:`sequence_to_code`."""
    code = int(code)
    if not 0 <= code < NUM_ARCHS:
        raise ValueError(f"a NAS-Bench-201 code is in [0, {NUM_ARCHS - 1}], got {code}")
    digits = []
    for _ in range(NUM_EDGES):
        code, op = divmod(code, NUM_OPS)
        digits.append(op)
    return tuple(reversed(digits))


def arch_to_code(arch: str) -> int:
    return sequence_to_code(arch_to_sequence(arch))


def code_to_arch(code: int) -> str:
    return sequence_to_arch(code_to_sequence(code))
