"""NAS-Bench-201 geometry: exact neighbourhoods, trees, paths, barriers and locality."""

import itertools
from math import comb

import numpy as np
import pytest
from flatarch.reference_spaces.nb201.benchmark import DATASETS, packaged_table
from flatarch.reference_spaces.nb201.encoding import (
    NUM_ARCHS,
    code_to_sequence,
    sequence_to_code,
)
from flatarch.reference_spaces.nb201.geometry import (
    PAPER_PAIRS,
    NB201Space,
    hamming,
    locality,
    neighbour_codes,
    neighbourhood_size,
    neighbourhood_stats,
    paper_pair_codes,
    path_between,
    path_levels,
    similar_neighbour,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from flatarch.geometry import neighbour_tree, path_tree, tiers_around

codes = st.integers(min_value=0, max_value=NUM_ARCHS - 1)
ALL_SEQUENCES = np.array([code_to_sequence(c) for c in range(NUM_ARCHS)])


def scan_neighbour_codes(code: int, radius: int) -> np.ndarray:
    """Oracle: the cells at Hamming distance ``radius``, found by scanning all 15,625 (sorted codes)."""
    return np.flatnonzero((ALL_SEQUENCES != ALL_SEQUENCES[code]).sum(-1) == radius)


@pytest.fixture(scope="module")
def real_table():
    """(code_of_index, {dataset: acc by code}) from the NAS-Bench-201 table shipped with flatarch."""
    table = packaged_table()
    return np.asarray(table.code_of_index), {ds: table.accuracies(ds) for ds in DATASETS}


@pytest.mark.parametrize("radius,size", [(0, 1), (1, 24), (2, 240), (3, 1280), (6, 4096)])
def test_neighbourhood_sizes(radius, size):
    assert neighbourhood_size(radius) == size == comb(6, radius) * 4**radius


@settings(max_examples=40, deadline=None)
@given(code=codes, radius=st.integers(min_value=1, max_value=4))
def test_neighbours_have_exact_hamming_distance_count_and_no_duplicates(code, radius):
    nb = neighbour_codes(code, radius)
    assert len(nb) == neighbourhood_size(radius)
    assert len(np.unique(nb)) == len(nb)
    assert (nb >= 0).all() and (nb < NUM_ARCHS).all()
    assert (hamming(code, nb) == radius).all()
    np.testing.assert_array_equal(np.sort(nb), scan_neighbour_codes(code, radius))


def test_batched_neighbours_match_single_queries():
    batch = np.array([0, 7, 1234, NUM_ARCHS - 1])
    nb = neighbour_codes(batch, 2)
    assert nb.shape == (4, 240)
    for row, code in zip(nb, batch):
        np.testing.assert_array_equal(row, neighbour_codes(int(code), 2))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="radius"):
        neighbour_codes(0, 7)
    with pytest.raises(ValueError, match="codes"):
        neighbour_codes(NUM_ARCHS, 1)
    with pytest.raises(ValueError, match="indexed by code"):
        path_between(np.zeros(10), 0, 1)


@settings(max_examples=5, deadline=None)
@given(code=codes)
def test_generic_neighbour_tree_equals_the_hamming_shells(code):
    space = NB201Space()
    root = code_to_sequence(code)
    tree = neighbour_tree(space, root, 3)
    for r, level in enumerate(tree):
        assert len(level) == len(set(level)) == neighbourhood_size(r)
        assert sorted(sequence_to_code(s) for s in level) == sorted(neighbour_codes(code, r).tolist())


def test_neighbour_tree_never_reverses_or_reedits_a_move():
    # Follow every move sequence of length 3 the tree allows and check no edge is touched twice,
    # hence no move is undone: the endpoint is always at Hamming distance 3.
    space = NB201Space()
    root = code_to_sequence(2024)
    count = 0
    for m1 in space.moves(root):
        for m2 in space.moves(m1.arch):
            if not m2.sites.isdisjoint(m1.sites):
                continue
            for m3 in space.moves(m2.arch):
                if m3.sites.isdisjoint(m1.sites | m2.sites):
                    count += 1
                    assert space.distance(root, m3.arch) == 3
                    assert m3.arch != root and m3.arch != m1.arch
    assert count == 24 * 20 * 16  # ordered sequences of 3 edits on distinct edges


@settings(max_examples=40, deadline=None)
@given(a=codes, b=codes)
def test_path_tree_levels_sizes_and_symmetry(a, b):
    d = int(hamming(a, b))
    fwd, bwd = path_levels(a, b), path_levels(b, a)
    assert [len(x) for x in fwd] == [comb(d, l) for l in range(d + 1)]
    assert fwd[0].tolist() == [a] and fwd[-1].tolist() == [b]
    for l, level in enumerate(fwd):
        assert (hamming(a, level) == l).all() and (hamming(b, level) == d - l).all()
        np.testing.assert_array_equal(level, bwd[d - l])  # same unique architectures both ways


@settings(max_examples=10, deadline=None)
@given(a=codes, b=codes)
def test_generic_path_tree_matches_vectorised_levels(a, b):
    tree = path_tree(NB201Space(), code_to_sequence(a), code_to_sequence(b))
    vec = path_levels(a, b)
    assert [sorted(sequence_to_code(s) for s in level) for level in tree] == [v.tolist() for v in vec]


def test_monotone_nb201_path_on_a_linear_landscape():
    # acc = number of conv_3x3 edges: from all-none to all-conv every path step gains one point.
    digits = np.array([code_to_sequence(c) for c in range(NUM_ARCHS)])
    acc = 50.0 + (digits == 3).sum(1)
    a, b = sequence_to_code((0,) * 6), sequence_to_code((3,) * 6)
    res = path_between(acc, a, b)
    np.testing.assert_allclose(res.accuracy_path, 50.0 + np.arange(7))
    # Eq. 9 on a monotone path: endpoint mean minus the first step's accuracy
    assert res.barrier.raw_min_cell == pytest.approx(53.0 - 51.0)
    assert res.barrier.raw_min_level_mean == pytest.approx(53.0 - 51.0)
    flat = path_between(np.full(NUM_ARCHS, 70.0), a, b)
    assert flat.barrier.raw_min_cell == 0.0 and flat.barrier.raw_min_level_mean == 0.0


def test_neighbourhood_stats_match_direct_computation():
    acc = np.random.default_rng(0).uniform(0, 100, NUM_ARCHS)
    stats = neighbourhood_stats(acc, radii=(1, 2), chunk=5000)
    for s in stats:
        for code in (0, 77, 9999, NUM_ARCHS - 1):
            nb = acc[scan_neighbour_codes(code, s.radius)]
            assert s.mean[code] == pytest.approx(nb.mean())
            assert s.min[code] == nb.min() and s.max[code] == nb.max()
            assert s.mean_abs_diff[code] == pytest.approx(np.abs(nb - acc[code]).mean())


def test_locality_pools_neighbours_per_tier():
    acc = np.random.default_rng(1).uniform(0, 100, NUM_ARCHS)
    tiers = tiers_around({"A": 90.0, "B": 50.0}, 0.5)
    loc = locality(acc, tiers, radii=(1, 2), n_random_pairs=1000, seed=0)
    cell = loc.get("A", 2)
    refs = tiers[0].members(acc)
    assert cell.n_refs == len(refs) and cell.neighbour_acc.size == len(refs) * 240
    expected = np.abs(acc[neighbour_codes(refs, 2)] - acc[refs, None]).ravel()
    np.testing.assert_allclose(cell.abs_diff, expected)
    # uniform i.i.d. accuracies: neighbourhoods look like the whole space
    assert cell.ks_vs_space.statistic < 0.05
    rows = loc.ks_rows("toy")
    assert len(rows) == 4 and {r.radius for r in rows} == {1, 2}
    assert loc.summary()["cells"][0]["n_neighbours"] == loc.cells[0].neighbour_acc.size


def test_similar_neighbour_respects_tolerance():
    acc = np.zeros(NUM_ARCHS)
    acc[100] = 50.0
    far = neighbour_codes(100, 3)
    acc[far] = 10.0
    acc[far[5]] = 49.5
    assert similar_neighbour(acc, 100, 3, 1.0) == far[5]
    assert similar_neighbour(acc, 100, 3, 0.1) is None


# ------------------------------------------------------------------ the real table (shipped with flatarch)


def test_paper_pairs_are_radius3_neighbours_of_similar_accuracy(real_table):
    code_of_index, accs = real_table
    for ds in PAPER_PAIRS:
        for a, b in paper_pair_codes(code_of_index, ds).values():
            assert hamming(a, b) == 3
            assert abs(accs[ds][a] - accs[ds][b]) <= 1.0


@pytest.mark.parametrize("dataset", list(PAPER_PAIRS))
@pytest.mark.parametrize(
    "variant", ["raw_min_cell", "raw_min_level_mean", "normalised_min_cell", "normalised_min_level_mean"]
)
def test_paper_barrier_ordering_a_lt_b_lt_c(real_table, dataset, variant):
    code_of_index, accs = real_table
    pairs = paper_pair_codes(code_of_index, dataset)
    barrier = {t: getattr(path_between(accs[dataset], a, b).barrier, variant) for t, (a, b) in pairs.items()}
    assert barrier["A"] < barrier["B"] < barrier["C"], barrier


def test_high_accuracy_neighbourhoods_are_tighter_than_random_pairs(real_table):
    # paper section 5.1: radius-1 neighbours of tier A differ less than random pairs, on every dataset
    from flatarch.reference_spaces.nb201.geometry import PAPER_REFERENCE_ACCURACIES

    _, accs = real_table
    for ds, acc in accs.items():
        loc = locality(acc, tiers_around(PAPER_REFERENCE_ACCURACIES[ds], 0.5), radii=(1,), n_random_pairs=20_000)
        assert np.median(loc.get("A", 1).abs_diff) < np.median(loc.random_abs_diff) / 2
        assert loc.get("A", 1).ks_vs_space.pvalue < 1e-6


def test_radius_sets_are_exhaustive_partition_of_the_space():
    code = 4321
    shells = [neighbour_codes(code, r) if r else np.array([code]) for r in range(7)]
    allc = np.concatenate(shells)
    assert len(allc) == NUM_ARCHS and len(np.unique(allc)) == NUM_ARCHS
    assert list(itertools.accumulate(len(s) for s in shells))[-1] == 5**6
