"""How decided a search's cell is (entropy, margin, "undecided", the initial-genotype warning), the
lines a search prints (seed tags; bars only on a terminal) and the demo's settings."""

import argparse
import math

import torch
from flatarch.reference_spaces.engine import SearchConfig, decision, reporting, search
from flatarch.reference_spaces.engine.config import DATASET_DEFAULTS, PAPER_DEFAULTS

from flatarch.cli import build_parser
from flatarch.cli.search import config_from_args

TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=2, progress=False, plot=False, seed=3)


def test_entropy_and_margin_of_known_distributions():
    uniform = {"cell": torch.zeros(6, 5)}
    assert math.isclose(decision.figures(uniform)["alpha_entropy"], math.log(5), rel_tol=1e-12)
    assert decision.figures(uniform)["alpha_margin"] == 0.0
    decided = torch.full((2, 4), -30.0)
    decided[0, 1] = decided[1, 3] = 30.0  # one-hot on both edges
    assert decision.figures({"normal": decided})["alpha_entropy"] < 1e-20
    two = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]]))
    figures = decision.figures({"normal": two[:1], "reduce": two[1:]})  # groups pooled: the smallest margin
    assert math.isclose(figures["alpha_margin"], 0.05, rel_tol=1e-6)  # float32 logs


def test_decided_edges_are_relative_to_the_initial_alphas_noise():
    torch.manual_seed(0)
    initial = {"cell": 1e-3 * torch.randn(6, 5)}
    noise = decision.noise_margin(initial)
    assert 0 < noise < 1e-3
    assert decision.figures(initial, noise)["decided_edges"] == 0 and decision.figures(initial)["edges"] == 6
    lead = initial["cell"].clone()
    lead[2, 4] += 1.0  # one edge decided: its top op well ahead of the noise
    lead[5, 0] += 5 * decision.NOISE_RATIO * noise  # logit lead x 1/5 = probability lead: just 10x the noise
    assert decision.figures({"cell": lead}, noise)["decided_edges"] == 1
    lead[5, 0] += 10 * decision.NOISE_RATIO * noise
    assert decision.figures({"cell": lead}, noise)["decided_edges"] == 2


def test_records_and_epoch_line_carry_entropy_margin_and_undecided(capsys):
    result = search(TINY, epochs=2, warmup_epochs=1)
    first, last = result.history
    for record in result.history:
        assert set(record) >= {"alpha_entropy", "alpha_margin", "decided_edges", "edges", "undecided"}
        assert record["undecided"] == (record["decided_edges"] == 0)
        assert record["alpha_entropy"] == decision.figures(
            {"cell": torch.tensor(record["alphas"]["arch_alpha"])})["alpha_entropy"]
    assert first["undecided"]  # a warm-up epoch leaves the alphas where they started
    assert last["alpha_entropy"] < first["alpha_entropy"]
    out = capsys.readouterr().out
    assert "entropy 1.609 margin" in out and "(undecided)" in out
    line = reporting.format_epoch({**last, "decided_edges": 4, "undecided": False}, 2)
    assert f"margin {last['alpha_margin']:.3g} decided 4/6" in line and "undecided" not in line


def test_the_initial_genotype_reported_is_warned_about(tmp_path, capsys):
    result = search(TINY, warmup_epochs=1, out=str(tmp_path / "run"))  # no alpha step: the initial cell
    err = capsys.readouterr().err
    assert result.genotype_json == result.history[0]["genotype_start"]
    assert "warning: the reported genotype (epoch 1) is the initial one" in err
    assert "warning: 6 of the reported cell's 6 edges are undecided in the initial alphas" in err
    assert len(result.warnings) == 2 and result.to_json()["warnings"] == result.warnings
    moved = search(TINY, epochs=3, arch_lr=0.5, warmup_epochs=0, select="final", seed=5)
    assert moved.genotype_json != moved.history[0]["genotype_start"]
    assert moved.history[-1]["decided_edges"] == 6 and not moved.warnings


def test_every_line_of_a_multi_seed_run_names_its_seed(tmp_path, capsys):
    search(TINY, seeds=[1, 2], out=str(tmp_path / "seeds"))
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "epoch 1/1" in line]
    assert sorted(line.split("]")[0] for line in lines) == ["[seed 1", "[seed 2"]
    assert all(line.startswith("[seed ") for line in captured.err.splitlines() if line.startswith(("[", "warn")))


def test_progress_bars_only_on_a_terminal(monkeypatch):
    args = build_parser().parse_args(["search", "--out", "x"])
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert config_from_args(args).progress is False
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert config_from_args(args).progress is True
    assert config_from_args(argparse.Namespace(**{**vars(args), "no_progress": True})).progress is False


def test_the_demo_warms_up_unless_it_is_short_and_steps_alphas_faster():
    demo = DATASET_DEFAULTS["digits"]
    resolved = SearchConfig().resolved({})
    assert (resolved.epochs, resolved.warmup_epochs, resolved.arch_lr) == (
        demo["epochs"], demo["warmup_epochs"], demo["arch_lr"])
    assert SearchConfig(epochs=8).resolved({}).warmup_epochs == 0  # too short to warm up
    assert SearchConfig(epochs=9).resolved({}).warmup_epochs == SearchConfig(epochs=90).resolved({}).warmup_epochs == 3
    assert SearchConfig(epochs=2, warmup_epochs=1).resolved({}).warmup_epochs == 1  # given: kept
    assert SearchConfig(dataset="cifar10").resolved({}).arch_lr == PAPER_DEFAULTS["arch_lr"]
    assert SearchConfig(method="pcdarts", recipe="original").resolved({}).warmup_epochs == 15


def test_the_undecided_warning_is_about_the_alphas_the_reported_cell_was_read_from(monkeypatch):
    """best-val-loss reports the genotype read before the best epoch: its edges are judged there, not
    after the last epoch (which, here, has all 6 decided); DARTS-PT's projection chose its ops itself."""
    from flatarch.reference_spaces.engine import loop

    losses = [3.0, 1.0, 2.0]  # the best epoch is 2: its genotype_start is the alphas after epoch 1
    monkeypatch.setattr(loop._Searcher, "validate", lambda self, epoch: (losses[epoch], 50.0))
    best = search(TINY, epochs=3, arch_lr=0.1, warmup_epochs=0, early_stop=0, seed=5)
    decided = [h["decided_edges"] for h in best.history]
    assert best.selected_epoch == 2 and decided[0] < decided[-1] == 6
    (warning,) = best.warnings
    assert warning.startswith(f"{6 - decided[0]} of the reported cell's 6 edges are undecided in the alphas after "
                              "epoch 1, which it was read from")
    assert not search(TINY, epochs=3, arch_lr=0.1, warmup_epochs=0, select="final", seed=5).warnings


def test_epoch_lines_show_a_diverging_loss_short_and_sharpness_only_for_perturbed_updates():
    record = {"epoch": 2, "train_loss": 2.3, "train_acc": 10.0, "val_loss": 8.877e26, "val_acc": 9.8,
              "seconds": 1.0, "genotype": "g", "step": {"steps": 4, "sharpness": 0.0, "evaluations": 1.0}}
    line = reporting.format_epoch(record, 2)
    assert "val 8.877e+26 9.80%" in line and "train 2.3000" in line
    assert "sharpness" not in line  # first-order: one evaluation, no perturbed point
    a2m = reporting.format_epoch({**record, "step": {"steps": 4, "sharpness": 1e-4, "evaluations": 4.0}}, 2)
    assert "sharpness 1.00e-04" in a2m
    text = reporting.describe_selection("best-val-loss", 2, [record])
    assert "validation loss 8.877e+26 was lowest" in text
