"""Arch strings and unique strings of all 15,625 NAS-Bench-201 cells, for bulk conversions.

Reading or writing a whole table converts 15,625 arch strings; building them from a fixed template
(and parsing only what does not match it) is much faster than parsing each one. Both lists are in
code order (:mod:`.encoding`) and built once per process.
"""

from __future__ import annotations

import itertools
from functools import cache

from .encoding import NUM_EDGES, OPS, arch_to_sequence, sequence_to_code
from .isomorphism import unique_string_of_sequence


@cache
def all_arch_strings() -> tuple[str, ...]:
    """Arch string of every code, in code order (the benchmark's own spelling)."""
    return tuple(
        f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|" for a, b, c, d, e, f in itertools.product(OPS, repeat=6)
    )


@cache
def all_unique_strings() -> tuple[str, ...]:
    """Unique (isomorphism) string of every code, in code order."""
    return tuple(unique_string_of_sequence(s) for s in itertools.product(range(len(OPS)), repeat=NUM_EDGES))


@cache
def _code_of_arch_string() -> dict[str, int]:
    return {arch: code for code, arch in enumerate(all_arch_strings())}


def arch_string_code(arch: str) -> int:
    """Code of a benchmark arch string; the strict parser explains anything non-canonical."""
    code = _code_of_arch_string().get(arch)
    return code if code is not None else sequence_to_code(arch_to_sequence(arch))
