"""The found cell's profile: parameters and FLOPs of its evaluation network, checked against the
figures NAS-Bench-201 and DARTS publish, in result.json, the printed summary and ``nb201 lookup``."""

import json

import pytest
from flatarch.reference_spaces.darts.known import KNOWN_GENOTYPES
from flatarch.reference_spaces.darts.space import DartsSpace
from flatarch.reference_spaces.engine import SearchConfig, search
from flatarch.reference_spaces.nb201.encoding import sequence_to_arch
from flatarch.reference_spaces.nb201.evaluation_network import NB201Network, cell_profile

from flatarch.cli import main

ALL_NONE, ALL_CONV3 = sequence_to_arch([0] * 6), sequence_to_arch([3] * 6)


def test_nb201_extremes_match_the_published_ranges():
    # NAS-Bench-201 (Dong & Yang, ICLR 2020) gives CIFAR-10 networks of 0.073 to 1.531 M parameters
    # and 7.78 to 220.11 M FLOPs (multiply-adds); ImageNet16-120 (16x16) 1.95 to 55.03 M FLOPs
    small, large = cell_profile(ALL_NONE), cell_profile(ALL_CONV3)
    assert small["cifar10"]["params"] == 73_306 and large["cifar10"]["params"] == 1_531_546
    assert small["cifar10"]["macs"] / 1e6 == pytest.approx(7.78, abs=0.005)
    assert large["cifar10"]["macs"] / 1e6 == pytest.approx(220.11, abs=0.015)
    assert small["imagenet16-120"]["macs"] / 1e6 == pytest.approx(1.95, abs=0.005)
    assert large["imagenet16-120"]["macs"] / 1e6 == pytest.approx(55.03, abs=0.015)
    assert large["cifar100"]["params"] - large["cifar10"]["params"] == 90 * 65  # the classifier's 90 more outputs
    assert all(p["flops"] == 2 * p["macs"] for p in large.values())


def test_nb201_cell_counts_each_op_once():
    # one 3x3 convolution on edge 1<-0 (the rest none) adds per stage 5 cells x (C*C*9 + 2C BN)
    one = cell_profile(sequence_to_arch([3, 0, 0, 0, 0, 0]))["cifar10"]["params"]
    assert one - 73_306 == sum(5 * (c * c * 9 + 2 * c) for c in (16, 32, 64))
    net = NB201Network(sequence_to_arch([1, 4, 2, 3, 0, 1]))
    assert net(__import__("torch").zeros(2, 3, 32, 32)).shape == (2, 10)


def test_darts_v2_at_the_papers_size_has_3_3_million_parameters():
    profile = DartsSpace().profile(KNOWN_GENOTYPES["DARTS_V2"])["cifar10"]
    assert profile["params"] / 1e6 == pytest.approx(3.3, abs=0.06)  # DARTS paper, table 1: 3.3M
    assert 400e6 < profile["macs"] < 700e6


def test_result_and_summary_carry_the_profile(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--subset", "48", "--batch-size", "8", "--channels", "4", "--cells", "1", "--epochs",
                 "1", "--no-plot", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["profile"] == cell_profile(result["genotype"])
    printed = capsys.readouterr().out
    params = result["profile"]["cifar10"]["params"] / 1e6
    assert f"evaluation network on cifar10: {params:.3f} M parameters" in printed


def test_nb201_lookup_prints_and_dumps_the_profile(capsys):
    assert main(["nb201", "lookup", ALL_CONV3, "000000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-2:] == ["params(M)", "FLOPs(M)"]
    assert lines[1].split()[-2:] == ["1.532", "220.12"] and lines[2].split()[-2:] == ["0.073", "7.78"]
    assert main(["nb201", "lookup", ALL_CONV3, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["profile"] == cell_profile(ALL_CONV3)


def test_darts_space_search_reports_its_evaluation_network():
    tiny = SearchConfig(space="darts", dataset="digits", subset=32, batch_size=8, channels=4, cells_per_stage=1,
                        epochs=1, max_batches=1, progress=False, plot=False)
    result = search(tiny)
    assert set(result.profile) == {"cifar10"} and result.profile == DartsSpace().profile(result.genotype)
