"""The search engine on tiny data: every method x update, the epoch records, selection and early
stopping, determinism, resume, atomic checkpoints, and bad settings refused up front."""

import json
import os

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig, SearchError, loop, reporting, search
from flatarch.reference_spaces.engine.methods import METHODS
from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME, read_checkpoint
from interrupts import interrupt_at

import flatarch

UPDATES = ["first-order", "sam", "usam", "a2m"]
# each method once and each update at least once by default; the full matrix with -m slow
QUICK = [("darts", "a2m"), ("pcdarts", "usam"), ("betadarts", "sam"), ("sdarts-rs", "first-order"),
         ("sdarts-adv", "a2m"), ("darts-minus", "first-order"), ("lambda-darts", "sam")]
# DARTS-PT has its own tests (tests/test_methods_lambda_pt.py): its genotype comes from the projection
FULL = [pytest.param(m, u, marks=pytest.mark.slow) for m in METHODS for u in UPDATES
        if (m, u) not in QUICK and m != "darts-pt"]

# tiny: 48 digits (24 per half), batches of 8, C=4, one cell per stage, 2 iterations per epoch
TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=2, progress=False, plot=False, seed=3)
RECORD_KEYS = {"epoch", "genotype_start", "genotype", "train_loss", "train_acc", "val_loss", "val_acc", "step",
               "benchmark", "alphas", "lr", "seconds"}


@pytest.mark.parametrize("method,update", QUICK + FULL)
def test_every_method_with_every_update(method, update):
    result = search(TINY, method=method, optimizer=update)
    record = result.history[-1]
    assert len(result.history) == 1 and set(record) >= RECORD_KEYS
    assert torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"]])).all()
    assert record["genotype"].count("~") == 6 and result.genotype == record["genotype_start"]
    assert record["step"]["steps"] == 2 and record["step"]["evaluations"] == {
        "first-order": 1, "sam": 2, "usam": 2, "a2m": 4}[update]
    assert set(record["step"]) >= set(reporting.STEP_FIGURES)
    assert torch.tensor(record["alphas"]["arch_alpha"]).shape == (6, 5)
    assert set(record["alphas"]) == {"arch_alpha"}  # no edge-normalisation betas on NAS-Bench-201


def test_alphas_move_and_search_is_deterministic():
    a = search(TINY, optimizer="a2m")
    b = search(TINY, optimizer="a2m")
    c = search(TINY, optimizer="a2m", seed=4)
    assert a.history[-1]["alphas"] == b.history[-1]["alphas"]
    assert a.history[-1]["alphas"] != c.history[-1]["alphas"]


def test_updates_differ_and_first_order_equals_rho_zero():
    fo = search(TINY, optimizer="first-order").history[-1]["alphas"]
    a2m = search(TINY, optimizer="a2m", rho=0.5).history[-1]["alphas"]
    usam0 = search(TINY, optimizer="usam", rho=0.0).history[-1]["alphas"]
    assert fo != a2m
    assert torch.allclose(torch.tensor(fo["arch_alpha"]), torch.tensor(usam0["arch_alpha"]), atol=1e-7)


def test_beta_decay_enters_the_architecture_loss(monkeypatch):
    calls = []
    real = flatarch.regularizers.beta_decay

    def spy(alphas, *a, **k):
        calls.append(alphas["cell"])
        return real(alphas, *a, **k)

    monkeypatch.setattr(flatarch.regularizers, "beta_decay", spy)
    search(TINY, method="betadarts", optimizer="a2m", epochs=2, max_batches=1, early_stop=0)
    # epoch 0 has weight 0 (lambda rises from 0); epoch 1: one call per gradient evaluation (A2M: 4),
    # each at the point being evaluated (the perturbed ones differ from the live alpha)
    assert len(calls) == 4
    assert not torch.equal(calls[0], calls[1])
    calls.clear()
    search(TINY, method="darts", optimizer="a2m", epochs=2, max_batches=1)
    assert calls == []


def _spy_weight_steps(monkeypatch):
    """Record (live alpha, the mixing weights the weight step's forward gets) per weight step."""
    seen = []
    real_step = loop._Searcher.weight_step

    def spy(self, batch, epoch, sums):
        before = self.net.arch_alpha.detach().clone()
        original_forward = self.net.forward

        def forward(x, weights=None):
            seen.append((epoch, before, None if weights is None else weights["cell"].detach().clone()))
            return original_forward(x, weights)

        self.net.forward = forward
        try:
            real_step(self, batch, epoch, sums)
        finally:
            del self.net.forward
        assert torch.equal(self.net.arch_alpha, before)  # alpha is never written by the weight step

    monkeypatch.setattr(loop._Searcher, "weight_step", spy)
    return seen


def test_random_smoothing_perturbs_the_probabilities_of_the_weight_step(monkeypatch):
    seen = _spy_weight_steps(monkeypatch)
    search(TINY, method="sdarts-rs", optimizer="first-order", epochs=2, early_stop=0)
    assert len(seen) == 4
    for epoch, alpha, weights in seen:
        clean = torch.softmax(alpha, -1)
        radius = 0.03 + (0.3 - 0.03) * epoch / 2  # SmoothDARTS' schedule, per epoch
        assert torch.allclose(weights.sum(-1), torch.ones(6))
        assert 0 < (weights - clean).abs().max() <= 2 * radius  # noise, then renormalised rows


def test_adversarial_smoothing_feeds_attacked_probabilities_to_the_weight_step(monkeypatch):
    from flatarch import smoothing

    results = []
    real = smoothing.adversarial_smoothing

    def spy(loss_fn, probs, epsilon, **kwargs):
        out = real(loss_fn, probs, epsilon, **kwargs)
        with torch.no_grad():
            results.append((float(loss_fn(probs)), float(loss_fn(out)), epsilon, probs["cell"], out["cell"]))
        return out

    monkeypatch.setattr(smoothing, "adversarial_smoothing", spy)
    seen = _spy_weight_steps(monkeypatch)
    search(TINY, method="sdarts-adv", optimizer="first-order")
    assert len(results) == 2
    for clean_loss, attacked_loss, epsilon, _clean, attacked in results:
        assert epsilon == pytest.approx(0.03) and attacked_loss >= clean_loss
        assert torch.allclose(attacked.sum(-1), torch.ones(6), atol=1e-6)
    # the weight step's forward got the attack's result (the last forward of each step)
    step_weights = [w for _, _, w in seen if w is not None]
    assert any(torch.equal(w, results[0][4]) for w in step_weights)


def test_darts_minus_skip_weight_follows_the_authors_schedule(monkeypatch):
    from flatarch.reference_spaces.nb201.search_network import NB201SearchNetwork

    weights = []
    real = NB201SearchNetwork.set_auxiliary_skip
    monkeypatch.setattr(NB201SearchNetwork, "set_auxiliary_skip",
                        lambda self, w: (weights.append(w), real(self, w))[1])
    search(TINY, method="darts-minus", optimizer="first-order", epochs=4, max_batches=1, early_stop=0)
    assert weights == [1.0, 1.0, 3 / 4, 2 / 4]  # (E - e + 1) / E after the first epoch, the last 2/E


def test_val_augmentation_defaults_follow_the_paper():
    on = search(TINY, optimizer="first-order", val_augment=True)
    off = search(TINY, optimizer="first-order", val_augment=False)
    assert on.config["val_augment"] is True and off.config["val_augment"] is False
    assert on.history[-1]["alphas"] != off.history[-1]["alphas"]
    # paper appendix C.4: off for DARTS on NAS-Bench-201 only
    assert search(TINY, method="darts").config["val_augment"] is False
    for method in ("pcdarts", "betadarts", "sdarts-rs", "darts-minus"):
        config = SearchConfig(method=method).resolved({})
        assert config.val_augment is True, method
    assert SearchConfig(method="darts", space="darts").resolved({}).val_augment is True


def test_warmup_epochs_and_the_pcdarts_original_recipe():
    result = search(TINY, method="pcdarts", optimizer="first-order", epochs=2, warmup_epochs=1, early_stop=0)
    first, second = result.history
    assert first["step"]["steps"] == 0 and second["step"]["steps"] == 2
    init = result.history[0]["alphas"]["arch_alpha"]
    torch.manual_seed(3)
    assert first["genotype_start"] == first["genotype"]  # no alpha step in the warm-up epoch
    assert init != second["alphas"]["arch_alpha"]
    original = SearchConfig(method="pcdarts", recipe="original").resolved({})
    assert (original.batch_size, original.lr, original.lr_min, original.arch_lr, original.warmup_epochs) == (
        256, 0.1, 0.0, 6e-4, 15)
    # explicit settings win over the recipe; the paper's settings are the default
    assert SearchConfig(method="pcdarts", recipe="original", batch_size=32).resolved({}).batch_size == 32
    assert SearchConfig(method="pcdarts").resolved({}).batch_size == 64
    with pytest.raises(SearchError, match="no recipe 'original'"):
        search(TINY, method="darts", recipe="original")


def _fake_validation(monkeypatch, losses):
    it = iter(losses)
    monkeypatch.setattr(loop._Searcher, "validate", lambda self, epoch: (next(it), 50.0))


def test_best_val_loss_selection_reports_the_genotype_read_before_the_best_epoch(monkeypatch, tmp_path):
    _fake_validation(monkeypatch, [2.0, 1.0, 1.5])
    result = search(TINY, epochs=3, out=str(tmp_path / "r"), early_stop=0, optimizer="first-order",
                    arch_lr=0.5)
    genotypes_start = [h["genotype_start"] for h in result.history]
    assert result.best_epoch == 2 and result.selected_epoch == 2
    assert result.genotype == genotypes_start[1]
    saved = json.load(open(tmp_path / "r" / loop.RESULT_NAME))
    assert saved["genotype"] == genotypes_start[1] and saved["best_epoch"] == 2
    assert saved["final_genotype"] == result.history[-1]["genotype"]
    assert saved["best_genotype"] == genotypes_start[1] and "best-val-loss" in saved["selection"]
    _fake_validation(monkeypatch, [2.0, 1.0, 1.5])
    final = search(TINY, epochs=3, early_stop=0, select="final", optimizer="first-order", arch_lr=0.5)
    assert final.genotype == final.history[-1]["genotype"] and final.selection.startswith("final")


def test_early_stop_after_more_than_patience_epochs_without_a_new_best(monkeypatch):
    _fake_validation(monkeypatch, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    result = search(TINY, epochs=6, early_stop=2, max_batches=1)
    # best at epoch 1; epochs 2 and 3 pass without a new best; epoch 4 is more than 2 after it
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and result.stopped_early
    records = [{"epoch": e, "train_loss": 1.0, "val_loss": loss} for e, loss in ((1, 1.0), (11, 2.0), (12, 2.0))]
    assert reporting.should_stop([records[0], records[2]], 10) and not reporting.should_stop(records[:2], 10)


def test_files_and_json_lines(tmp_path):
    out = str(tmp_path / "run")
    result = search(TINY, epochs=2, out=out, plot=True)
    lines = [json.loads(line) for line in open(os.path.join(out, loop.LOG_NAME))]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["alphas"] == result.history[-1]["alphas"] and set(lines[-1]) >= RECORD_KEYS
    saved = json.load(open(os.path.join(out, loop.RESULT_NAME)))
    assert saved["genotype"] == result.genotype
    assert os.path.getsize(os.path.join(out, loop.PLOT_NAME)) > 1000
    assert json.load(open(os.path.join(out, "genotype.json")))["arch"] == result.genotype
    with pytest.raises(UsageError, match="--resume"):
        search(TINY, epochs=2, out=out)  # never overwrite a finished search


def _straight_and_interrupted(cfg, tmp_path, monkeypatch, epoch):
    """``cfg``'s uninterrupted search, and the folder of the same search interrupted in ``epoch``."""
    full = search(cfg, out=str(tmp_path / "full"))
    out = str(tmp_path / "cut")
    with monkeypatch.context() as m:
        interrupt_at(m, epoch)
        with pytest.raises(KeyboardInterrupt):
            search(cfg, out=out)
    return full, out


@pytest.mark.parametrize("method,update", [("darts", "a2m"), ("sdarts-rs", "sam"), ("pcdarts", "usam")])
def test_resume_gives_identical_alphas_and_keeps_the_best(tmp_path, monkeypatch, method, update):
    cfg = TINY.replace(epochs=3, method=method, optimizer=update, early_stop=0)
    full, out = _straight_and_interrupted(cfg, tmp_path, monkeypatch, 2)
    assert read_checkpoint(os.path.join(out, CHECKPOINT_NAME))["epoch"] == 2
    resumed = search(cfg, out=out, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(full.history, resumed.history):
        assert a["alphas"] == b["alphas"] and a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert (resumed.genotype, resumed.best_epoch) == (full.genotype, full.best_epoch)
    assert json.load(open(os.path.join(out, loop.RESULT_NAME)))["genotype"] == full.genotype_json


def _snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name))}


def test_refused_resume_changes_nothing_and_names_every_difference(tmp_path):
    out = str(tmp_path / "r")
    search(TINY, epochs=2, out=out, plot=True)
    before = _snapshot(out)
    with pytest.raises(UsageError, match=r"seed: 3 -> 4; lr: 0.025 -> 0.1"):
        search(TINY, epochs=2, out=out, resume=True, lr=0.1, seed=4)
    with pytest.raises(UsageError, match="epochs: 2 -> 1"):
        search(TINY, epochs=1, out=out, resume=True)
    assert _snapshot(out) == before


def test_every_setting_that_changes_the_search_must_match_on_resume(tmp_path):
    """Method settings too (a --lambda or a projection interval given on --resume was taken silently);
    what may differ is how the command runs and reports."""
    assert {"lambda_coef", "lambda_eps0", "lambda_corr", "projection_interval", "tune_epochs"} <= set(loop.RESUME_KEYS)
    assert not {"out", "device", "threads", "progress", "plot", "log_to", "select"} & set(loop.RESUME_KEYS)
    out = str(tmp_path / "r")
    search(TINY, method="lambda-darts", out=out)
    before = _snapshot(out)
    with pytest.raises(UsageError, match=r"lambda_coef: 0.125 -> 0.5"):
        search(TINY, method="lambda-darts", out=out, resume=True, lambda_coef=0.5)
    assert _snapshot(out) == before


def test_resume_of_a_complete_search_writes_nothing_and_more_epochs_extend_it(tmp_path, capsys):
    out = str(tmp_path / "r")
    straight = search(TINY, epochs=3, out=str(tmp_path / "straight"), early_stop=0)
    search(TINY, epochs=2, out=out, early_stop=0)
    before = _snapshot(out)
    again = search(TINY, epochs=2, out=out, resume=True, early_stop=0)
    assert "complete" in capsys.readouterr().err and _snapshot(out) == before and len(again.history) == 2
    extended = search(TINY, epochs=3, out=out, resume=True, early_stop=0)
    assert "extending" in capsys.readouterr().err
    assert [h["epoch"] for h in extended.history] == [1, 2, 3]
    # the first two epochs are the 2-epoch run's; the cosine schedule then runs over 3 epochs
    assert extended.history[2]["lr"] != straight.history[2]["lr"] or extended.history[1] != straight.history[1]


def test_resume_without_a_run_starts_one_and_says_so(tmp_path, capsys):
    result = search(TINY, out=str(tmp_path / "new"), resume=True)
    assert "starting a new one" in capsys.readouterr().err and len(result.history) == 1


def test_a_checkpoint_of_another_version_is_refused_and_kept(tmp_path):
    """A search checkpoint from before the supernets grouped their edges (version 2) holds another
    parameter layout: --resume names the versions and loses nothing; --restart moves it aside."""
    out = tmp_path / "r"
    search(TINY, epochs=2, out=str(out))
    state = read_checkpoint(str(out / CHECKPOINT_NAME))
    state["version"] = loop.CHECKPOINT_VERSION - 1
    torch.save(state, out / CHECKPOINT_NAME)
    before = _snapshot(out)
    with pytest.raises(UsageError, match=rf"checkpoint version {loop.CHECKPOINT_VERSION - 1}, this one reads "
                                         rf"{loop.CHECKPOINT_VERSION}\); .*--restart"):
        search(TINY, epochs=2, out=str(out), resume=True)
    assert _snapshot(out) == before
    assert len(search(TINY, epochs=1, out=str(out), restart=True).history) == 1


def test_damaged_checkpoint_is_named_and_restart_moves_it_aside(tmp_path):
    out = tmp_path / "r"
    search(TINY, epochs=1, out=str(out))
    (out / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    before = _snapshot(out)
    with pytest.raises(UsageError, match=r"checkpoint.pt is damaged .*--restart"):
        search(TINY, epochs=1, out=str(out), resume=True)
    assert _snapshot(out) == before
    search(TINY, epochs=1, out=str(out), restart=True)
    aside = [d for d in os.listdir(out) if d.startswith("replaced-")]
    assert len(aside) == 1 and (out / aside[0] / CHECKPOINT_NAME).read_bytes() == b"not a checkpoint"
    assert read_checkpoint(str(out / CHECKPOINT_NAME))["epoch"] == 1


def test_out_that_is_a_file_or_unwritable_is_refused_before_any_work(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("mine")
    with pytest.raises(UsageError, match="is a file"):
        search(TINY, out=str(target))
    assert target.read_text() == "mine"
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(UsageError, match="cannot be written .*Read-only"):
        search(TINY, out=str(tmp_path / "ro" / "run"))
    assert not (tmp_path / "ro").exists()


def test_crash_mid_checkpoint_keeps_previous(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    cfg = TINY.replace(epochs=2, early_stop=0)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"partial garbage")  # half-written file, then the process dies
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", failing_save)
        with pytest.raises(OSError):
            search(cfg, out=out)
    assert sorted(os.listdir(out)) == [CHECKPOINT_NAME, loop.LOG_NAME]  # no temporary left
    assert read_checkpoint(os.path.join(out, CHECKPOINT_NAME))["epoch"] == 1
    resumed = search(cfg, out=out, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    full = search(cfg, out=str(tmp_path / "full"))
    assert resumed.history[-1]["alphas"] == full.history[-1]["alphas"]


@pytest.mark.parametrize("settings,message", [
    ({"epochs": 0}, "--epochs must be a whole number >= 1"),
    ({"lr": float("nan")}, "--lr must be a finite number > 0"),
    ({"lr": float("inf")}, "--lr must be a finite number > 0"),
    ({"arch_lr": float("inf")}, "--arch-lr must be"),
    ({"lr_min": float("nan")}, "--lr-min must be"),
    ({"lr": 0.01, "lr_min": 0.1}, "--lr-min .* must not exceed --lr"),
    ({"channels": 0}, "--channels must be"),
    ({"cells_per_stage": 0}, "--cells must be"),
    ({"subset": -3}, "--subset must be"),
    ({"threads": -1}, "--threads must be"),
    ({"momentum": 1.5}, "--momentum must be"),
    ({"optimizer": "first-order", "rho": 0.1}, "--rho does not apply to --optimizer first-order"),
    ({"optimizer": "sam", "difference": "forward"}, "--difference does not apply to --optimizer sam"),
    ({"optimizer": "usam", "eps": 0.1}, "--eps does not apply"),
    ({"method": "darts", "smoothing_epsilon": 0.1}, "--smoothing-epsilon does not apply to --method darts"),
    ({"early_stop": -1}, "--early-stop must be"),
    ({"select": "best"}, "--select must be one of"),
    ({"method": "enas"}, "unknown method 'enas'"),
    ({"space": "nope"}, "unknown search space 'nope'"),
    ({"channels": 6, "method": "pcdarts"}, "multiple of PC-DARTS' K = 4"),
    ({"ops": "s5"}, "one op set"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        search(TINY, out=str(tmp_path / "r"), **settings)
    assert not (tmp_path / "r").exists()


def test_options_that_need_something_else_are_refused():
    if not torch.cuda.is_available():
        with pytest.raises(SearchError, match="no CUDA"):
            search(TINY, device="cuda")
        with pytest.raises(SearchError, match="--amp .* needs a CUDA device"):
            search(TINY, amp=True)
    with pytest.raises(SearchError, match="--workers .* give --seeds"):
        search(TINY, workers=2)
    with pytest.raises(SearchError, match="unknown search setting"):
        search(TINY, learning_rate=0.1)


def test_diverging_weights_are_never_checkpointed(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(flatarch.NonFiniteError, match="NaN/Inf"):
        search(TINY, out=str(out), lr=1e12, epochs=2, grad_clip=0.0)
    assert not (out / CHECKPOINT_NAME).exists()
    with pytest.raises(UsageError, match="weights became NaN/Inf in epoch 1"):
        search(TINY, out=str(tmp_path / "s"), lr=1e12, epochs=2, grad_clip=0.0, on_nonfinite="skip")
    assert not (tmp_path / "s" / CHECKPOINT_NAME).exists()


def test_search_on_user_tensors():
    from flatarch.reference_spaces.data import ImageData

    g = torch.Generator().manual_seed(0)
    data = ImageData("mine", torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 3, (24,), generator=g), 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1, True)
    result = search(TINY, data=data, subset=None)
    assert result.genotype.count("~") == 6 and result.history[-1]["epoch"] == 1


def test_search_reports_benchmark_accuracy_per_epoch(nats_bench_csv, tmp_path):
    result = search(TINY, epochs=2, space_options={"table": nats_bench_csv}, out=str(tmp_path / "r"))
    assert set(result.benchmark) == {"cifar10", "cifar100", "imagenet16-120"}
    from flatarch.reference_spaces.nb201.benchmark import BenchmarkTable

    table = BenchmarkTable.load(nats_bench_csv)
    assert result.benchmark == table.lookup(result.genotype)
    assert all(h["benchmark"] == table.lookup(h["genotype"]) for h in result.history)
    saved = json.load(open(tmp_path / "r" / loop.RESULT_NAME))
    assert saved["benchmark"] == result.benchmark
    assert saved["reference"]["optimum"]["cifar10"] == pytest.approx(94.37, abs=0.01)


def test_a_non_finite_validation_loss_is_never_selected_and_starts_no_patience(monkeypatch, tmp_path):
    """``--lr 1e6``: epoch 1's validation loss is NaN. It is not the best epoch (comparisons with NaN
    are false: it used to stay "best" forever), patience counts from the best finite epoch, and the
    run says it diverged and from which epoch."""
    nan = float("nan")
    _fake_validation(monkeypatch, [nan, 2.0, 1.5, 3.0, 4.0])
    out = tmp_path / "r"
    result = search(TINY, epochs=5, early_stop=2, max_batches=1, optimizer="first-order", out=str(out))
    assert len(result.history) == 5 and result.selected_epoch == result.best_epoch == 3  # 5 - 3 is not > 2
    assert result.diverged_epoch == 1 and "the search diverged from epoch 1 (training loss" in result.selection
    saved = json.load(open(out / loop.RESULT_NAME))
    assert saved["diverged_epoch"] == 1 and saved["selected_epoch"] == 3 and saved["genotype"] == result.genotype
    # --select final never reports a non-finite epoch either: the last finite one, said so
    _fake_validation(monkeypatch, [1.0, 2.0, nan])
    final = search(TINY, epochs=3, early_stop=0, max_batches=1, select="final")
    assert final.selected_epoch == 2 and "the last epoch with finite losses (2)" in final.selection
    assert final.genotype == final.history[1]["genotype"] and final.diverged_epoch == 3
    # with no finite epoch to report there is no result: the run fails, saying so (exit 2 on the command line)
    _fake_validation(monkeypatch, [nan, nan])
    with pytest.raises(UsageError, match="diverged from epoch 1 .* no epoch has finite losses to report"):
        search(TINY, epochs=2, early_stop=0, max_batches=1, out=str(tmp_path / "nan"))
    assert not (tmp_path / "nan" / loop.RESULT_NAME).exists() and (tmp_path / "nan" / CHECKPOINT_NAME).exists()


def test_weights_that_blow_up_after_a_finite_epoch_end_the_search_which_reports_that_epoch(monkeypatch, tmp_path):
    from flatarch.reference_spaces.errors import DivergedError

    real = loop.assert_finite_state

    def blow_up_in_epoch_2(tensors, epoch, hint):
        if epoch == 2:
            raise DivergedError(f"the weights became NaN/Inf in epoch 2 (simulated). {hint}")
        return real(tensors, epoch, hint)

    monkeypatch.setattr(loop, "assert_finite_state", blow_up_in_epoch_2)
    out = tmp_path / "r"
    result = search(TINY, epochs=3, early_stop=0, out=str(out))
    assert [h["epoch"] for h in result.history] == [1] and result.selected_epoch == 1 and result.stopped_early
    assert result.diverged_epoch == 2 and "weights became NaN/Inf in epoch 2" in result.selection
    assert json.load(open(out / loop.RESULT_NAME))["diverged_epoch"] == 2
    assert read_checkpoint(str(out / CHECKPOINT_NAME))["epoch"] == 1  # the last good epoch stays committed


def test_a_first_epoch_that_never_reached_its_checkpoint_is_run_again_and_said_so(tmp_path, capsys):
    """An older flatarch wrote the log before the checkpoint: a kill in between left a one-line log and
    no checkpoint. --resume starts the run there (the rerun rewrites that line); a longer log without a
    checkpoint is refused, naming what is there."""
    straight = search(TINY, epochs=2, early_stop=0, out=str(tmp_path / "straight"))
    out = tmp_path / "r"
    out.mkdir()
    first = open(tmp_path / "straight" / loop.LOG_NAME).readline()
    (out / loop.LOG_NAME).write_text(first)
    resumed = search(TINY, epochs=2, early_stop=0, out=str(out), resume=True)
    assert "holds search.jsonl but no checkpoint.pt: its first epoch never reached a checkpoint" in \
        capsys.readouterr().err
    assert [h["alphas"] for h in resumed.history] == [h["alphas"] for h in straight.history]
    both = out / "both"
    both.mkdir()
    (both / loop.LOG_NAME).write_text(first * 2)
    with pytest.raises(UsageError, match=r"holds a run \(search.jsonl\) but no checkpoint.pt to continue from"):
        search(TINY, epochs=2, out=str(both), resume=True)
    assert (both / loop.LOG_NAME).read_text() == first * 2


def test_resume_of_a_finished_search_rewrites_a_damaged_result_from_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "r"
    search(TINY, epochs=1, out=str(out), plot=True)
    intact = _snapshot(out)
    (out / loop.RESULT_NAME).write_text('{"genotype": ')  # damaged
    (out / loop.PLOT_NAME).unlink()
    (out / f".{loop.RESULT_NAME}.x1y2.tmp").write_text("a write cut short")
    search(TINY, epochs=1, out=str(out), resume=True, plot=True)
    err = capsys.readouterr().err
    assert "is complete" in err and "result.json is missing or does not match the checkpoint; rewriting" in err
    assert _snapshot(out) == intact  # the temporary file is gone, the plot back, the result as it was


def test_resume_with_only_out_keeps_what_the_recipe_changed(tmp_path, monkeypatch):
    """``search(out=X, resume=True)`` takes every setting from the checkpoint; result.json still names
    what the recipe changed (resolved by the run's first command), as the uninterrupted run's does."""
    cfg = TINY.replace(method="pcdarts", recipe="original", epochs=2, early_stop=0, batch_size=8, warmup_epochs=0)
    straight, out = _straight_and_interrupted(cfg, tmp_path, monkeypatch, 1)
    resumed = search(out=out, resume=True, progress=False)
    saved, whole = (json.load(open(os.path.join(folder, loop.RESULT_NAME))) for folder in (out, straight.out))
    assert saved["recipe"] == whole["recipe"] and saved["recipe"]["changed"]  # the recipe set lr, arch_lr, ...
    assert [h["alphas"] for h in resumed.history] == [h["alphas"] for h in straight.history]
