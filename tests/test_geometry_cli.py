"""``flatarch geometry nb201`` end to end: on a synthetic table (fast) and on the real one (slow)."""

import csv
import json
import os

import numpy as np
import pytest
from flatarch.reference_spaces.nb201.benchmark import DATASETS, BenchmarkTable
from flatarch.reference_spaces.nb201.encoding import NUM_ARCHS, code_to_sequence

from flatarch.cli import main


@pytest.fixture(scope="module")
def synthetic_table(tmp_path_factory):
    """A smooth landscape: accuracy grows with the number of conv edges, plus noise; index = code."""
    digits = np.array([code_to_sequence(c) for c in range(NUM_ARCHS)])
    rng = np.random.default_rng(0)
    base = 40.0 + 8.0 * np.isin(digits, (2, 3)).sum(1)
    acc = np.stack([np.clip(base + rng.normal(0, 1, NUM_ARCHS) - k * 10, 0, 100) for k in range(3)], 1)
    path = tmp_path_factory.mktemp("table") / "synthetic.npz"
    BenchmarkTable(np.arange(NUM_ARCHS), acc, source="synthetic").to_npz(path)
    return str(path)


def test_cli_nb201_writes_every_output(synthetic_table, tmp_path, capsys):
    out = tmp_path / "geo"
    rc = main(
        [
            "geometry",
            "nb201",
            "--table",
            synthetic_table,
            "--dataset",
            "cifar10",
            "--pairs",
            "auto",
            "--tier-refs",
            "A=85,B=70,C=55",
            "--tier-window",
            "1",
            "--random-pairs",
            "5000",
            "--radii",
            "1",
            "3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    names = set(os.listdir(out))
    assert {"ks_table.csv", "ks_table.md", "barriers.json", "locality.json"} <= names
    assert {"neighbours_cifar10.png", "differences_cifar10.png", "paths_cifar10.png"} <= names
    for png in ("neighbours_cifar10.png", "paths_cifar10.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "ks_table.csv")))
    assert [(r["tier"], r["radius"]) for r in rows] == [(t, str(r)) for r in (1, 3) for t in "ABC"]
    assert all(0.0 <= float(r["cifar10_ks"]) <= 1.0 for r in rows)
    assert int(rows[0]["cifar10_n"]) == 24 * int(rows[0]["cifar10_n_refs"]) > 0
    barriers = json.load(open(out / "barriers.json"))["cifar10"]
    assert barriers["pairs"] == "auto" and barriers["warnings"] == []
    assert set(barriers["paths"]) == {"A", "B", "C"}
    for path in barriers["paths"].values():
        assert path["distance"] == 3
        lv = path["levels"]
        assert [len(x) for x in lv] == [1, 3, 3, 1]
        assert abs(lv[0][0]["accuracy"] - lv[-1][0]["accuracy"]) <= 1.0
        assert set(path["barrier"]) >= {"raw_min_cell", "normalised_min_level_mean"}
    loc = json.load(open(out / "locality.json"))["cifar10"]
    assert loc["tiers"]["A"] == {"low": 84.0, "high": 86.0}
    assert "barrier min-cell" in capsys.readouterr().out


def test_cli_nb201_threshold_tiers_and_cell_stats(synthetic_table, tmp_path):
    out = tmp_path / "geo"
    rc = main(
        [
            "geometry",
            "nb201",
            "--table",
            synthetic_table,
            "--dataset",
            "c100",
            "--pairs",
            "auto",
            "--tier-thresholds",
            "70,50",
            "--radii",
            "1",
            "--no-plots",
            "--cell-stats",
            "--random-pairs",
            "1000",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert not any(n.endswith(".png") for n in os.listdir(out))
    with open(out / "cell_stats_cifar100.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == NUM_ARCHS and "r1_mean_abs_diff" in rows[0]
    tiers = json.load(open(out / "locality.json"))["cifar100"]["tiers"]
    assert tiers["A"]["low"] == 70.0 and tiers["C"]["high"] < 50.0


def test_cli_nb201_warns_when_paper_pairs_do_not_fit_the_table(synthetic_table, tmp_path, capsys):
    # the synthetic table's rows are in code order, not the benchmark's: the paper's index pairs
    # land on unrelated cells, which the report must flag
    out = tmp_path / "geo"
    args = ["geometry", "nb201", "--table", synthetic_table, "--dataset", "cifar10", "--radii", "1"]
    assert main(args + ["--no-plots", "--random-pairs", "100", "--out", str(out)]) == 0
    assert "index order" in capsys.readouterr().err
    assert json.load(open(out / "barriers.json"))["cifar10"]["warnings"]


def test_cli_nb201_errors_are_clear(synthetic_table, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLATARCH_NB201_TABLE", raising=False)
    assert main(["geometry", "nb201", "--out", str(tmp_path / "a")]) == 2
    assert "--table" in capsys.readouterr().err
    assert main(["geometry", "nb201", "--table", synthetic_table, "--dataset", "mnist", "--out", str(tmp_path)]) == 2
    assert "unknown NAS-Bench-201 dataset" in capsys.readouterr().err
    args = ["geometry", "nb201", "--table", synthetic_table, "--tier-refs", "A=1", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "prefix it with the dataset" in capsys.readouterr().err
    assert main(["geometry", "nb201", "--table", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_nb201_on_the_real_table_reproduces_the_barrier_ordering(nats_bench_csv, tmp_path):
    out = tmp_path / "geo"
    assert main(["geometry", "nb201", "--table", nats_bench_csv, "--out", str(out)]) == 0
    barriers = json.load(open(out / "barriers.json"))
    for ds in DATASETS:
        paths = barriers[ds]["paths"]
        for variant in ("normalised_min_cell", "normalised_min_level_mean"):
            b = [paths[t]["barrier"][variant] for t in "ABC"]
            assert b[0] < b[1] < b[2], (ds, variant, b)
        for t in "ABC":
            assert paths[t]["distance"] == 3
    assert len(open(out / "ks_table.md").read().splitlines()) >= 11
