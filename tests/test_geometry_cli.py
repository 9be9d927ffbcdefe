"""``flatarch geometry nb201`` end to end: on a synthetic table (fast), on the shipped real one (slow),
and ``--arch`` on one cell."""

import csv
import json
import os
import re

import numpy as np
import pytest
from flatarch.reference_spaces.nb201.benchmark import DATASETS, BenchmarkTable, packaged_table
from flatarch.reference_spaces.nb201.encoding import NUM_ARCHS, OPS, arch_to_sequence, code_to_arch, code_to_sequence
from flatarch.reference_spaces.nb201.geometry import path_between

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
    cases = [
        (["--table", synthetic_table, "--dataset", "mnist"], "unknown NAS-Bench-201 dataset 'mnist'"),
        (["--table", synthetic_table, "--tier-refs", "A=1"], "prefix it with the dataset"),
        (["--table", synthetic_table, "--dataset", "c10", "--tier-refs", "A"], "--tier-refs 'A': give tier"),
        (["--table", synthetic_table, "--dataset", "c10", "--tier-thresholds", "70"], "--tier-thresholds '70': give"),
        (["--table", str(tmp_path / "none.csv")], r"none.csv \(from --table\): does not exist"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        assert main(["geometry", "nb201", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert re.match("flatarch geometry: error: .*" + message, err) and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_cli_nb201_out_must_be_a_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    assert main(["geometry", "nb201", "--arch", "111111", "--out", str(blocker)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and blocker.read_text() == "keep"


@pytest.mark.slow
def test_cli_nb201_on_the_real_table_reproduces_the_barrier_ordering(tmp_path, monkeypatch):
    out = tmp_path / "geo"
    assert main(["geometry", "nb201", "--out", str(out)]) == 0  # the table shipped with flatarch
    barriers = json.load(open(out / "barriers.json"))
    for ds in DATASETS:
        paths = barriers[ds]["paths"]
        for variant in ("normalised_min_cell", "normalised_min_level_mean"):
            b = [paths[t]["barrier"][variant] for t in "ABC"]
            assert b[0] < b[1] < b[2], (ds, variant, b)
        for t in "ABC":
            assert paths[t]["distance"] == 3
    assert len(open(out / "ks_table.md").read().splitlines()) >= 11


# ------------------------------------------------------------------ --arch: one cell
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def _radius1_by_hand(table, arch: str, dataset: str) -> list[float]:
    """Accuracies of the 24 cells that differ from ``arch`` in exactly one edge, built edge by edge."""
    seq = arch_to_sequence(arch)
    return [
        table.accuracy(seq[:e] + (op,) + seq[e + 1 :], dataset)
        for e in range(len(seq))
        for op in range(len(OPS))
        if op != seq[e]
    ]


@pytest.mark.parametrize("spelling", [ALL_SKIP, "111111", "1,1,1,1,1,1", "code:3906", "index:1835"])
def test_cli_arch_all_skip_radius1_matches_the_table(spelling, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cell"
    assert main(["geometry", "nb201", "--arch", spelling, "--radii", "1", "2", "--out", str(out)]) == 0
    report = json.load(open(out / "cell.json"))
    table = packaged_table()
    assert report["arch"] == ALL_SKIP and report["index"] == table.index_of(ALL_SKIP) == 1835
    for ds in DATASETS:
        got, own = report["datasets"][ds], table.accuracy(ALL_SKIP, ds)
        expected = _radius1_by_hand(table, ALL_SKIP, ds)
        r1 = got["neighbourhoods"][0]
        assert got["accuracy"] == own and r1["radius"] == 1 and r1["n"] == 24
        assert r1["mean"] == pytest.approx(np.mean(expected)) and r1["min"] == min(expected)
        assert r1["max"] == max(expected) and r1["better"] == sum(x > own for x in expected)
        assert got["neighbourhoods"][1]["n"] == 240
        assert got["optimum"]["accuracy"] == float(table.accuracies(ds).max())
    printed = capsys.readouterr().out
    assert "cifar10          54.30       1    24" in printed and "to the optimum 94.37" in printed


def test_cli_arch_barrier_to_the_optimum(tmp_path, capsys):
    """Path and barrier equal path_between on the same cells; the optimum itself has distance 0."""
    table = packaged_table()
    best = int(np.argmax(table.accuracies("cifar100")))
    out = tmp_path / "cell"
    assert main(["geometry", "nb201", "--arch", f"code:{best}", "--dataset", "c100", "--out", str(out)]) == 0
    own = json.load(open(out / "cell.json"))["datasets"]["cifar100"]
    assert set(json.load(open(out / "cell.json"))["datasets"]) == {"cifar100"}
    assert own["path_to_optimum"]["distance"] == 0 and own["path_to_optimum"]["barrier"]["raw_min_cell"] == 0
    assert main(["geometry", "nb201", "--arch", ALL_SKIP, "--dataset", "c100", "--out", str(out)]) == 0
    path = json.load(open(out / "cell.json"))["datasets"]["cifar100"]["path_to_optimum"]
    expected = path_between(table.accuracies("cifar100"), table.code_of(ALL_SKIP), best)
    assert path["distance"] == 5 and path["b"] == code_to_arch(best)
    assert path["accuracy_path"] == pytest.approx(expected.accuracy_path.tolist())
    assert path["barrier"] == pytest.approx(expected.barrier.to_dict())


@pytest.mark.parametrize(
    "arch, message",
    [
        ("11111", "--arch: a NAS-Bench-201 op sequence has 6 op indices"),
        ("index:99999", r"--arch: 'index:99999': index must be in \[0, 15624\]"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--arch: unknown op 'conv'"),
    ],
)
def test_cli_arch_bad_arch_is_one_line_and_writes_nothing(arch, message, tmp_path, capsys):
    out = tmp_path / "cell"
    assert main(["geometry", "nb201", "--arch", arch, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert re.match("flatarch geometry: error: " + message, err) and len(err.splitlines()) == 1, err
    assert captured.out == "" and not out.exists()
