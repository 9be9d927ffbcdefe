"""``--hessian-every`` and ``--hessian-stop``: the dominant Hessian eigenvalue in the epoch records,
measured on a fixed batch without changing the search, R-DARTS' early stop, resume, bad values."""

import math
import os
from types import SimpleNamespace

import pytest
import torch
from flatarch.reference_spaces.data import BatchStream, load_dataset, split_half
from flatarch.reference_spaces.engine import SearchConfig, SearchError, hessian, plot, reporting, search
from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME, read_checkpoint
from interrupts import interrupt_at

import flatarch
from flatarch import sharpness
from flatarch.cli import main

# tiny: 48 digits (24 per half), batches of 8, C=4, one cell per stage
TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=3,
                    max_batches=2, progress=False, plot=False, seed=3, optimizer="first-order")


def _alphas(result):
    return [h["alphas"] for h in result.history]


def test_every_k_epochs_a_finite_eigenvalue_and_the_search_unchanged():
    plain = search(TINY)
    every = search(TINY, hessian_every=1)
    second = search(TINY, hessian_every=2)
    for record in every.history:
        measured = record["hessian"]
        assert math.isfinite(measured["eigenvalue"]) and measured["eigenvalue"] != 0
        assert isinstance(measured["iterations"], int) and 1 <= measured["iterations"] <= 20
        assert "hessian eigenvalue" in reporting.format_epoch(record, 3)
    # R-DARTS' epochs: 0, K, 2K, ... (0-based)
    assert ["hessian" in r for r in second.history] == [True, False, True]
    assert "hessian eigenvalue" not in reporting.format_epoch(second.history[1], 3)
    assert [r["hessian"] for r in second.history[::2]] == [r["hessian"] | {"seconds": s["hessian"]["seconds"]}
                                                            for r, s in zip(every.history[::2], second.history[::2])]
    # measuring changes nothing: buffers and random state are put back
    assert _alphas(plain) == _alphas(every) == _alphas(second)
    assert [r["val_loss"] for r in plain.history] == [r["val_loss"] for r in every.history]
    assert "hessian" not in plain.history[0]


def test_the_recorded_value_is_a_direct_call_on_the_first_validation_batch(monkeypatch):
    real = sharpness.power_iteration
    seen = []

    def spy(loss_fn, alpha, **kwargs):
        alpha_before = {k: v.detach().clone() for k, v in alpha.items()}
        found = real(loss_fn, alpha, **kwargs)
        # the same loss built by hand (darts has no regulariser) at a copy of the same alpha
        direct = real(flatarch.module_loss(loss_fn.module, loss_fn.batch, list(alpha)), alpha_before)
        seen.append((loss_fn.batch, found, direct))
        return found

    monkeypatch.setattr(sharpness, "power_iteration", spy)
    result = search(TINY, hessian_every=1)
    assert len(seen) == 3
    for record, (_, found, direct) in zip(result.history, seen):
        assert record["hessian"]["eigenvalue"] == found.value == direct.value
        assert record["hessian"]["iterations"] == found.iterations == direct.iterations
    data = load_dataset("digits").subset(48)
    validation = BatchStream(data, split_half(48)[1], 8, False, 3, 1)  # darts on nb201: no val augmentation
    x0, y0 = next(iter(validation.sweep(0)))
    for (x, y), _, _ in seen:
        assert torch.equal(x, x0) and torch.equal(y, y0)


def _records(values, every=1):
    return [{"epoch": 1 + i * every, "hessian": {"eigenvalue": v}} for i, v in enumerate(values)]


def test_r_darts_rule_on_a_known_sequence():
    cfg = SimpleNamespace(hessian_stop=1.3, epochs=50)
    # 1 for the (0-based) epochs 0..13, then 2: the local mean of measurement 14 (epochs 12-16) is
    # 1.6 against 1.0 four measurements earlier (epoch 10, the first that may be compared)
    values = [1.0] * 14 + [2.0] * 10
    for seen in range(len(values) + 1):
        expected = 11 if seen >= 17 else None
        assert hessian.stop_epoch(_records(values[:seen]), cfg) == expected, seen
    # a higher ratio fires one measurement later (1.8 = mean of epochs 13-17 against 1.0); the
    # comparison is strict, as R-DARTS' `current_la / previous_la > factor`: 2 never exceeds 2
    assert hessian.stop_epoch(_records(values), SimpleNamespace(hessian_stop=1.7, epochs=50)) == 12
    assert hessian.stop_epoch(_records(values), SimpleNamespace(hessian_stop=2.0, epochs=50)) is None
    # never on the last epoch (R-DARTS train_search.py L423): 17 epochs end the search anyway
    assert hessian.stop_epoch(_records(values[:17]), SimpleNamespace(hessian_stop=1.3, epochs=17)) is None
    # a jump before epoch 10 is not compared
    early = [1.0] * 3 + [2.0] * 14
    assert hessian.stop_epoch(_records(early), cfg) is None
    # every 2 epochs: measurement j - 4 must lie at epoch 10 or later, i.e. measurement 5 (epoch 11, 1-based)
    spaced = [1.0] * 7 + [2.0] * 6
    assert hessian.stop_epoch(_records(spaced, every=2), cfg) == 11
    # a sign change is not growth: -1 -> 0.8 at the first comparison (mean of -1, -1, 2, 2, 2)
    assert hessian.stop_epoch(_records([-1.0] * 14 + [2.0] * 3), cfg) is None
    assert hessian.stop_epoch(_records([-1.0] * 14 + [-2.0] * 3), cfg) is None


def test_the_search_stops_and_reports_the_genotype_from_before_the_growth(monkeypatch, tmp_path):
    values = iter([1.0] * 14 + [2.0] * 20)
    monkeypatch.setattr(sharpness, "power_iteration",
                        lambda loss_fn, alpha, **k: sharpness.PowerIteration(next(values), alpha, 1, True))
    out = str(tmp_path / "run")
    result = search(TINY, epochs=25, max_batches=1, hessian_every=1, hessian_stop=1.3, early_stop=0, out=out)
    assert len(result.history) == 17 and result.stopped_early
    assert result.selected_epoch == 11 and result.genotype_json == result.history[10]["genotype"]
    assert result.selection.startswith("hessian-stop: the genotype after epoch 11")
    # resuming the stopped search: complete, same report
    again = search(TINY, epochs=25, max_batches=1, hessian_every=1, hessian_stop=1.3, early_stop=0, out=out,
                   resume=True)
    assert len(again.history) == 17 and again.selected_epoch == 11 and again.selection == result.selection


def test_resume_keeps_the_measurements(tmp_path, monkeypatch):
    cfg = TINY.replace(hessian_every=1, early_stop=0)
    full = search(cfg)
    out = str(tmp_path / "cut")
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            search(cfg, out=out)
    saved = read_checkpoint(os.path.join(out, CHECKPOINT_NAME))["records"]
    assert [r["hessian"]["eigenvalue"] for r in saved] == [r["hessian"]["eigenvalue"] for r in full.history[:2]]
    resumed = search(cfg, out=out, resume=True)
    assert [r["hessian"] for r in resumed.history[:2]] == [r["hessian"] for r in saved]  # kept, not re-measured
    assert [r["hessian"]["eigenvalue"] for r in resumed.history] == [r["hessian"]["eigenvalue"] for r in full.history]
    with pytest.raises(UsageError, match="hessian_every: 1 -> 2"):
        search(cfg, out=out, resume=True, hessian_every=2)


def test_the_plot_has_the_eigenvalue_panel(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plot, "atomic_save_figure", lambda fig, path, **k: drawn.update(fig=fig))
    result = search(TINY, hessian_every=2, plot=True, out=str(tmp_path / "run"))
    panel = next(ax for ax in drawn["fig"].axes if ax.get_title() == "Hessian eigenvalue")
    x, y = panel.lines[0].get_data()
    assert list(x) == [1, 3] and list(y) == [r["hessian"]["eigenvalue"] for r in result.history[::2]]
    assert panel.get_xlim() == next(ax for ax in drawn["fig"].axes if ax.get_title() == "supernet loss").get_xlim()


@pytest.mark.parametrize("settings,match", [
    ({"hessian_every": -1}, "--hessian-every must be a whole number of epochs >= 0"),
    ({"hessian_every": 1.5}, "--hessian-every must be a whole number of epochs >= 0"),
    ({"hessian_every": 1, "hessian_stop": 1.0}, r"--hessian-stop must be a finite ratio > 1"),
    ({"hessian_every": 1, "hessian_stop": float("nan")}, r"--hessian-stop must be a finite ratio > 1"),
    ({"hessian_stop": 1.3}, "add --hessian-every"),
    ({"method": "darts-pt", "hessian_every": 1, "hessian_stop": 1.3}, "reports its projection's genotype"),
])
def test_bad_values_are_refused_before_anything_runs(tmp_path, settings, match):
    out = tmp_path / "run"
    with pytest.raises(SearchError, match=match):
        search(TINY, out=str(out), **settings)
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--hessian-every", "-1"], ["--hessian-every", "1", "--hessian-stop", "1"]])
def test_cli_refuses_bad_values_with_one_line(tmp_path, capsys, flags):
    code = main(["search", "--subset", "48", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--hessian-" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "r")
