"""Canonical strings that identify isomorphic NAS-Bench-201 cells.

Two cells compute the same function (up to the order of summed inputs) when they have the same
*unique string*. It is the ``UniqueString`` column of the benchmark's CSV export, built node by
node from the input node ``0``:

* an edge ``op`` from node ``j`` contributes ``(s_j)@op`` where ``s_j`` is node ``j``'s string;
* ``skip_connect`` contributes ``s_j`` itself (the identity adds no op);
* ``none``, or any edge leaving a node whose string is exactly ``#``, contributes ``#`` (zero);
* a node's string is its contributions sorted and joined with ``+``.

The output node's string identifies the cell.
"""

from __future__ import annotations

from collections.abc import Sequence

from .encoding import EDGES, OPS, arch_to_sequence

ZERO = "#"


def unique_string_of_sequence(seq: Sequence[int]) -> str:
    """Unique string of a cell given as its 6-op sequence (see the module docstring)."""
    ops = [OPS[int(i)] for i in seq]
    if len(ops) != len(EDGES):
        raise ValueError(f"a NAS-Bench-201 sequence has {len(EDGES)} ops, got {len(ops)}")
    nodes = {0: "0"}
    for target in (1, 2, 3):
        parts = []
        for (t, src), op in zip(EDGES, ops):
            if t != target:
                continue
            if op == "none" or nodes[src] == ZERO:
                parts.append(ZERO)
            elif op == "skip_connect":
                parts.append(nodes[src])
            else:
                parts.append(f"({nodes[src]})@{op}")
        nodes[target] = "+".join(sorted(parts))
    return nodes[3]


def unique_string(arch: str) -> str:
    """Unique string of a cell given as its benchmark arch string."""
    return unique_string_of_sequence(arch_to_sequence(arch))
