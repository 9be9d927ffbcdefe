"""DARTS geometry: encodings, radius-1 moves, sampled neighbours, paths, genotype files, CLI."""

import json
import os

import numpy as np
import pytest
from flatarch.reference_spaces.darts.genotype import GENOTYPE_OPS, STEPS, Genotype, from_json, load, to_json
from flatarch.reference_spaces.darts.geometry import (
    MOVE_OPS,
    DartsSpace,
    arch_to_genotype,
    cell_to_matrix,
    check_matrix,
    genotype_to_arch,
    matrix_to_cell,
    matrix_to_sequence,
    sequence_to_matrix,
)
from flatarch.reference_spaces.darts.known import DARTS_V1, DARTS_V2, KNOWN_GENOTYPES
from hypothesis import given, settings
from hypothesis import strategies as st

from flatarch.cli import main
from flatarch.geometry import neighbour_tree, path_tree, random_neighbour, sample_neighbours


@st.composite
def cells(draw):
    cell = []
    for node in range(STEPS):
        inputs = draw(st.lists(st.integers(0, node + 1), min_size=2, max_size=2, unique=True))
        for j in inputs:
            cell.append((draw(st.sampled_from(MOVE_OPS)), j))
    return cell


@st.composite
def genotypes(draw):
    return Genotype(draw(cells()), [2, 3, 4, 5], draw(cells()), [2, 3, 4, 5])


def assert_valid(arch):
    """Every intermediate node has exactly two distinct predecessors, all earlier nodes."""
    for seq in arch:
        mat = sequence_to_matrix(seq)  # validates: two non-zero entries per row, at j < i + 2
        for i in range(STEPS):
            assert np.count_nonzero(mat[i]) == 2


def test_matrix_encoding_matches_the_spec():
    g = DARTS_V2
    mat = cell_to_matrix(g.normal)
    assert mat.shape == (4, 5)
    sep3, skip, dil3 = (1 + GENOTYPE_OPS.index(o) for o in ("sep_conv_3x3", "skip_connect", "dil_conv_3x3"))
    np.testing.assert_array_equal(
        mat, [[sep3, sep3, 0, 0, 0], [sep3, sep3, 0, 0, 0], [skip, sep3, 0, 0, 0], [skip, 0, dil3, 0, 0]]
    )
    seq = matrix_to_sequence(mat)
    assert len(seq) == 14 and seq[:2] == (sep3, sep3) and seq[9:] == (skip, 0, dil3, 0, 0)


@settings(max_examples=50, deadline=None)
@given(genotypes())
def test_conversions_round_trip(g):
    arch = genotype_to_arch(g)
    back = arch_to_genotype(arch)
    for cell, cell_back in ((g.normal, back.normal), (g.reduce, back.reduce)):
        np.testing.assert_array_equal(cell_to_matrix(cell), cell_to_matrix(cell_back))
        # per node, same (op, input) pairs up to order
        for node in range(STEPS):
            assert sorted(cell[2 * node : 2 * node + 2]) == sorted(cell_back[2 * node : 2 * node + 2])
    for seq in arch:
        assert matrix_to_sequence(sequence_to_matrix(seq)) == seq
        assert matrix_to_sequence(cell_to_matrix(matrix_to_cell(sequence_to_matrix(seq)))) == seq
    assert genotype_to_arch(from_json(json.loads(json.dumps(to_json(g))))) == arch


def test_invalid_cells_are_rejected_with_clear_errors():
    g = DARTS_V2
    with pytest.raises(ValueError, match="twice"):
        cell_to_matrix([("sep_conv_3x3", 0), ("skip_connect", 0)] + list(g.normal[2:]))
    with pytest.raises(ValueError, match="inputs 0..1"):
        cell_to_matrix([("sep_conv_3x3", 2)] + list(g.normal[1:]))
    with pytest.raises(ValueError, match="unknown op"):
        cell_to_matrix([("conv_9x9", 0)] + list(g.normal[1:]))
    with pytest.raises(ValueError, match="8 \\(op, input\\) pairs"):
        cell_to_matrix(g.normal[:6])
    bad = cell_to_matrix(g.normal)
    bad[3, 4] = 1
    with pytest.raises(ValueError, match="row 3"):
        check_matrix(bad)


@settings(max_examples=20, deadline=None)
@given(genotypes())
def test_radius1_moves_keep_two_distinct_predecessors_and_are_one_move_away(g):
    space = DartsSpace()
    root = genotype_to_arch(g)
    moves = list(space.moves(root))
    targets = [m.arch for m in moves]
    assert len(targets) == len(set(targets))  # every move gives a different architecture
    # per cell: op changes 8 edges x 6 other ops; adjustments sum over nodes of 2 x (i) free inputs x 7 ops
    per_cell = 8 * (len(MOVE_OPS) - 1) + sum(2 * i * len(MOVE_OPS) for i in range(STEPS))
    assert len(moves) == 2 * per_cell == 264
    for m in moves:
        assert_valid(m.arch)
        assert space.distance(root, m.arch) == 1 == space.distance(m.arch, root)
        assert 1 <= len(m.sites) <= 2


def test_moves_restricted_to_one_cell():
    root = genotype_to_arch(DARTS_V2)
    for cell in ("normal", "reduce"):
        keep = 1 if cell == "normal" else 0
        for m in DartsSpace(cells=(cell,)).moves(root):
            assert m.arch[keep] == root[keep] and m.arch[1 - keep] != root[1 - keep]
    with pytest.raises(ValueError, match="cells"):
        DartsSpace(cells=("stem",))


def test_neighbour_tree_level2_is_exactly_distance_2():
    space = DartsSpace(cells=("reduce",))
    root = genotype_to_arch(DARTS_V1)
    tree = neighbour_tree(space, root, 2)
    assert len(tree[1]) == 132
    assert all(space.distance(root, x) == 2 for x in tree[2])
    assert not set(tree[2]) & (set(tree[1]) | {root})


@settings(max_examples=10, deadline=None)
@given(genotypes(), st.integers(1, 3), st.integers(0, 1000))
def test_sampled_neighbours_are_distinct_valid_and_seeded(g, radius, seed):
    space = DartsSpace()
    root = genotype_to_arch(g)
    sample = sample_neighbours(space, root, radius, 30, seed=seed)
    assert len(sample) == len(set(sample)) == 30
    for arch in sample:
        assert_valid(arch)
        assert space.distance(root, arch) == radius
    assert sample == sample_neighbours(space, root, radius, 30, seed=seed)


def test_sampling_more_than_the_neighbourhood_fails_clearly():
    class Tiny:  # a space with only two radius-1 neighbours
        def moves(self, arch):
            from flatarch.geometry import Move

            return [Move(arch + 1, frozenset({0})), Move(arch + 2, frozenset({0}))]

    with pytest.raises(ValueError, match="distinct radius-1"):
        sample_neighbours(Tiny(), 0, 1, 3, seed=0)


@settings(max_examples=15, deadline=None)
@given(genotypes(), st.integers(1, 5), st.integers(0, 1000))
def test_path_tree_is_shortest_and_symmetric(ga, radius, seed):
    space = DartsSpace()
    a = genotype_to_arch(ga)
    b = random_neighbour(space, a, radius, np.random.default_rng(seed))
    d = space.distance(a, b)
    assert d == radius == space.distance(b, a)
    fwd, bwd = path_tree(space, a, b), path_tree(space, b, a)
    assert len(fwd) == d + 1 and fwd[0] == [a] and fwd[-1] == [b]
    for l, level in enumerate(fwd):
        assert set(level) == set(bwd[d - l])
        for arch in level:
            assert_valid(arch)
            assert space.distance(a, arch) == l and space.distance(arch, b) == d - l


def test_cli_darts_writes_trainable_neighbour_genotypes(tmp_path, capsys):
    out = tmp_path / "nb"
    rc = main(
        [
            "geometry",
            "darts",
            "--genotype",
            "DARTS_V2",
            "--radius",
            "1",
            "3",
            "--samples",
            "4",
            "--seed",
            "7",
            "--target",
            "DARTS_V1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["neighbours"]) == 8
    root = genotype_to_arch(load(str(out / "root.json")))
    space = DartsSpace()
    for entry in manifest["neighbours"]:
        g = load(str(out / entry["file"]))
        assert set(json.loads((out / entry["file"]).read_text())) == {
            "normal",
            "normal_concat",
            "reduce",
            "reduce_concat",
        }
        assert space.distance(root, genotype_to_arch(g)) == entry["radius"] == entry["distance"]
    path_manifest = json.loads((out / "path" / "manifest.json").read_text())
    assert path_manifest["levels"][0] == ["level0_000.json"]
    assert len(path_manifest["levels"]) == path_manifest["distance"] + 1
    assert "flatarch train --genotype" in capsys.readouterr().out
    # same seed, same files
    out2 = tmp_path / "nb2"
    main(
        [
            "geometry",
            "darts",
            "--genotype",
            "DARTS_V2",
            "--radius",
            "1",
            "3",
            "--samples",
            "4",
            "--seed",
            "7",
            "--out",
            str(out2),
        ]
    )
    assert (out / "radius3" / "neighbour_002.json").read_text() == (out2 / "radius3" / "neighbour_002.json").read_text()


def test_cli_darts_reports_bad_genotype(tmp_path, capsys):
    rc = main(["geometry", "darts", "--genotype", "NOPE", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "neither a genotype file nor a known name" in err and "PC_DARTS" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("name", sorted(KNOWN_GENOTYPES) + ["darts-v2", "pc_darts"])
def test_cli_darts_accepts_every_known_name(name, tmp_path, capsys):
    out = tmp_path / "nb"
    assert main(["geometry", "darts", "--genotype", name, "--samples", "2", "--out", str(out)]) == 0
    assert load(str(out / "root.json")) == load(name)


def test_cli_darts_bad_target_or_too_large_path_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x"
    base = ["geometry", "darts", "--genotype", "DARTS_V2", "--samples", "2", "--out", str(out)]
    assert main(base + ["--target", "NOPE"]) == 2
    assert "neither a genotype file nor a known name" in capsys.readouterr().err
    assert main(base + ["--target", "PC_DARTS", "--max-path-archs", "3"]) == 2
    assert "--max-path-archs" in capsys.readouterr().err
    assert not out.exists()


def test_cli_darts_impossible_request_writes_nothing(tmp_path, capsys):
    # radius 1 restricted to one cell has 132 neighbours: 200 cannot be sampled
    out = tmp_path / "x"
    args = ["geometry", "darts", "--genotype", "DARTS_V1", "--cells", "normal", "--samples", "200", "--out", str(out)]
    assert main(args) == 2
    assert "distinct radius-1 neighbours" in capsys.readouterr().err
    assert not out.exists()


def test_spaces_satisfy_the_protocol():
    from flatarch.reference_spaces.nb201.geometry import NB201Space

    from flatarch.geometry import Space

    assert isinstance(DartsSpace(), Space) and isinstance(NB201Space(), Space)
