"""Encodings of NAS-Bench-201 cells: arch string <-> sequence <-> code, over the whole space."""

import pytest
from flatarch.reference_spaces.nb201 import (
    NUM_ARCHS,
    OPS,
    arch_to_code,
    arch_to_sequence,
    code_to_arch,
    code_to_sequence,
    sequence_to_arch,
    sequence_to_code,
)


def test_round_trip_all_15625_cells():
    assert NUM_ARCHS == 15625
    seen = set()
    for code in range(NUM_ARCHS):
        seq = code_to_sequence(code)
        arch = sequence_to_arch(seq)
        assert arch_to_sequence(arch) == seq
        assert sequence_to_code(seq) == code
        assert arch_to_code(arch) == code and code_to_arch(code) == arch
        seen.add(arch)
    assert len(seen) == NUM_ARCHS


def test_known_strings():
    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert arch_to_sequence(best) == (3, 3, 3, 1, 3, 3)
    skips = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert sequence_to_arch((1,) * 6) == skips
    assert OPS.index("avg_pool_3x3") == 4


@pytest.mark.parametrize("bad", ["", "|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                 "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_bad_strings_raise(bad):
    with pytest.raises(ValueError):
        arch_to_sequence(bad)
