"""NAS-Bench-201 search space (imported as ``flatarch.reference_spaces.nb201``)."""

from .encoding import (
    EDGES,
    NUM_ARCHS,
    NUM_EDGES,
    NUM_OPS,
    OPS,
    arch_to_code,
    arch_to_sequence,
    code_to_arch,
    code_to_sequence,
    sequence_to_arch,
    sequence_to_code,
)

__all__ = [
    "EDGES",
    "NUM_ARCHS",
    "NUM_EDGES",
    "NUM_OPS",
    "OPS",
    "arch_to_code",
    "arch_to_sequence",
    "code_to_arch",
    "code_to_sequence",
    "sequence_to_arch",
    "sequence_to_code",
]
