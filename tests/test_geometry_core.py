"""Space-generic geometry: barriers, accuracy paths, KS, tiers, random pairs, report files."""

import csv
import io
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatarch.geometry import (
    Tier,
    accuracy_barrier,
    accuracy_path,
    ks_test,
    random_pair_differences,
    tiers_around,
    tiers_from_thresholds,
)
from flatarch.geometry.report import (
    KSRow,
    atomic_write_json,
    atomic_write_text,
    ks_table_csv,
    ks_table_markdown,
)

finite_acc = st.floats(min_value=1.0, max_value=100.0, allow_nan=False)


def levels(values):
    return [np.asarray(v, dtype=float) for v in values]


def test_flat_path_has_zero_barrier_in_both_variants():
    b = accuracy_barrier(levels([[90.0], [90.0, 90.0], [90.0, 90.0, 90.0], [90.0]]))
    assert b.raw_min_cell == 0.0 and b.raw_min_level_mean == 0.0
    assert b.normalised_min_cell == 0.0 and b.normalised_min_level_mean == 0.0


@given(a=finite_acc, rise=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=2, max_size=6))
def test_monotone_path_barrier_is_bounded_by_half_the_endpoint_gap_and_zero_when_flat(a, rise):
    # A path that never dips below its start and returns to the same accuracy is monotone only if flat;
    # in general a non-decreasing path a -> b has barrier (acc(a)+acc(b))/2 - acc(first step) <= (b - a)/2.
    accs = np.cumsum([a] + rise)
    lv = levels([[x] for x in accs])
    b = accuracy_barrier(lv)
    assert b.raw_min_cell == pytest.approx((accs[0] + accs[-1]) / 2 - accs[1])
    assert b.raw_min_cell <= (accs[-1] - accs[0]) / 2 + 1e-9
    flat = accuracy_barrier(levels([[a]] * (len(rise) + 1)))
    assert flat.raw_min_cell == 0.0 and flat.raw_min_level_mean == 0.0


def test_barrier_variants_differ_as_defined():
    # level 1 holds one bad cell among good ones: the single-cell minimum sees it, the level mean dilutes it
    lv = levels([[90.0], [60.0, 90.0, 90.0, 90.0], [88.0, 89.0], [92.0]])
    b = accuracy_barrier(lv)
    assert b.endpoint_mean == 91.0
    assert b.min_cell == 60.0 and b.raw_min_cell == 31.0
    assert b.min_level_mean == 82.5 and b.raw_min_level_mean == 8.5
    assert b.normalised_min_cell == pytest.approx(31.0 / 91.0)
    assert b.normalised_min_level_mean == pytest.approx(8.5 / 91.0)
    np.testing.assert_allclose(accuracy_path(lv), [90.0, 82.5, 88.5, 92.0])
    d = b.to_dict()
    assert set(d) >= {
        "raw_min_cell",
        "normalised_min_cell",
        "raw_min_level_mean",
        "normalised_min_level_mean",
    }


def test_adjacent_endpoints_have_no_barrier_and_bad_levels_are_rejected():
    assert accuracy_barrier(levels([[80.0], [70.0]])).raw_min_cell == 0.0
    with pytest.raises(ValueError, match="start with"):
        accuracy_barrier(levels([[80.0, 81.0], [70.0]]))
    with pytest.raises(ValueError, match="at least one"):
        accuracy_path(levels([[80.0], [], [70.0]]))


@given(st.lists(finite_acc, min_size=1, max_size=50))
def test_ks_of_identical_samples_is_zero(sample):
    res = ks_test(np.asarray(sample), np.asarray(sample))
    assert res.statistic == 0.0
    assert res.pvalue == pytest.approx(1.0)
    assert res.n == len(sample)


def test_ks_detects_shifted_samples_and_handles_empty():
    rng = np.random.default_rng(0)
    res = ks_test(rng.normal(1.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000))
    assert res.statistic > 0.3 and res.pvalue < 1e-10
    empty = ks_test(np.array([]), np.arange(5.0))
    assert empty.n == 0 and np.isnan(empty.statistic)


def test_random_pairs_never_pair_a_cell_with_itself_and_are_seeded():
    acc = np.arange(1000, dtype=float)  # distinct values: |diff| == 0 only for x == y
    d = random_pair_differences(acc, 50_000, seed=3)
    assert d.min() >= 1.0
    np.testing.assert_array_equal(d, random_pair_differences(acc, 50_000, seed=3))
    assert not np.array_equal(d, random_pair_differences(acc, 50_000, seed=4))


def test_tiers():
    acc = np.array([10.0, 50.0, 60.0, 70.0, 94.0])
    t = tiers_around({"A": 94.0, "B": 60.0}, 5.0)
    assert [x.name for x in t] == ["A", "B"]
    np.testing.assert_array_equal(t[0].members(acc), [4])
    np.testing.assert_array_equal(t[1].members(acc), [2])
    a, b, c = tiers_from_thresholds(acc, high=70.0, low=50.0)
    assert [a.members(acc).tolist(), b.members(acc).tolist(), c.members(acc).tolist()] == [
        [3, 4],
        [1, 2],
        [0],
    ]
    with pytest.raises(ValueError, match="low"):
        Tier("X", 5.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        tiers_from_thresholds(acc, high=10.0, low=20.0)


@settings(max_examples=30)
@given(st.integers(min_value=0, max_value=10_000))
def test_threshold_tiers_partition_the_space(seed):
    acc = np.random.default_rng(seed).uniform(0, 100, 200)
    tiers = tiers_from_thresholds(acc, high=70.0, low=30.0)
    members = np.concatenate([t.members(acc) for t in tiers])
    assert sorted(members.tolist()) == list(range(200))


def _rows():
    from flatarch.geometry.locality import KSResult

    return [
        KSRow(ds, tier, lo, hi, r, 3, KSResult(0.1 * r, 1e-5, 24 * 3 * r))
        for ds in ("cifar10", "cifar100")
        for tier, lo, hi in (("A", 93.0, 94.0), ("B", 80.0, 81.0))
        for r in (1, 2)
    ]


def test_ks_table_layout_is_radius_major_with_per_dataset_columns():
    text = ks_table_csv(_rows())
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:3] == ["tier", "radius", "cifar10_interval"]
    assert "cifar100_ks" in table[0] and "cifar100_n" in table[0]
    assert [(r[0], r[1]) for r in table[1:]] == [("A", "1"), ("B", "1"), ("A", "2"), ("B", "2")]
    md = ks_table_markdown(_rows())
    assert md.splitlines()[0].startswith("| Tier | Radius | cifar10 KS")
    assert "| A | 2 | 0.200 |" in md


def test_atomic_writes_leave_no_temporary_files_and_write_strict_json(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(str(path), {"a": float("nan"), "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.5]}
    atomic_write_text(str(path), "replaced")
    assert path.read_text() == "replaced"
    assert os.listdir(path.parent) == ["x.json"]
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"bad": object()})
    assert path.read_text() == "replaced"  # a failed write keeps the old file
    assert os.listdir(path.parent) == ["x.json"]
