"""The search engine on tiny data: every method x update, determinism, resume, atomic checkpoints."""

import json
import os

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig, SearchError, loop, search
from flatarch.reference_spaces.engine import checkpoint as ckpt_mod
from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.space import Method

import flatarch

METHODS = ["darts", "pcdarts", "betadarts", "sdarts-rs", "darts-minus"]
UPDATES = ["first-order", "sam", "usam", "a2m"]

# tiny: 48 digits (24 per half), batches of 8, C=4, one cell per stage, 2 iterations per epoch
TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=2, progress=False, plot=False, seed=3)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("update", UPDATES)
def test_every_method_with_every_update(method, update):
    result = search(TINY, method=method, optimizer=update)
    record = result.history[-1]
    assert len(result.history) == 1
    assert set(record) >= {"train_loss", "train_acc", "val_loss", "val_acc", "alphas", "genotype", "benchmark"}
    assert torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"]])).all()
    assert record["genotype"] == result.genotype and result.genotype.count("~") == 6
    alphas = torch.tensor(record["alphas"]["arch_alpha"])
    assert alphas.shape == (6, 5)
    assert ("arch_beta" in record["alphas"]) == (method == "pcdarts")


def test_alphas_move_and_search_is_deterministic():
    a = search(TINY, optimizer="a2m")
    b = search(TINY, optimizer="a2m")
    c = search(TINY, optimizer="a2m", seed=4)
    assert a.history[-1]["alphas"] == b.history[-1]["alphas"]
    assert a.history[-1]["alphas"] != c.history[-1]["alphas"]
    torch.manual_seed(3)  # the initial alphas the engine draws for seed 3
    from flatarch.reference_spaces.nb201.search_network import NB201SearchNetwork

    init = NB201SearchNetwork(num_classes=10, in_channels=1, channels=4, cells_per_stage=1).arch_alpha
    assert not torch.equal(init, torch.tensor(a.history[-1]["alphas"]["arch_alpha"]))


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
        calls.append(alphas["alpha"])
        return real(alphas, *a, **k)

    monkeypatch.setattr(flatarch.regularizers, "beta_decay", spy)
    search(TINY, method="betadarts", optimizer="a2m", epochs=2, max_batches=1)
    # epoch 0 has weight 0 (lambda rises from 0); epoch 1: one call per gradient evaluation (A2M: 4),
    # each at the point being evaluated (the perturbed ones differ from the live alpha)
    assert len(calls) == 4
    assert not torch.equal(calls[0], calls[1])
    calls.clear()
    search(TINY, method="darts", optimizer="a2m", epochs=2, max_batches=1)
    assert calls == []


def test_random_smoothing_restores_alpha(monkeypatch):
    seen = []
    real_step = loop._Searcher.weight_step

    def spy(self, batch, stats):
        before = {k: p.detach().clone() for k, p in self.arch.items()}
        original_forward = self.net.forward

        def forward(x):
            seen.append((self.net.arch_alpha.detach() - before["arch_alpha"]).abs().max().item())
            return original_forward(x)

        self.net.forward = forward
        try:
            real_step(self, batch, stats)
        finally:
            del self.net.forward
        for k, p in self.arch.items():
            assert torch.equal(p, before[k])

    monkeypatch.setattr(loop._Searcher, "weight_step", spy)
    search(TINY, method="sdarts-rs", optimizer="first-order")
    assert seen and all(0 < s <= 0.03 for s in seen)


def test_val_augmentation_switch():
    on = search(TINY, optimizer="first-order", val_augment=True)
    off = search(TINY, optimizer="first-order", val_augment=False)
    assert on.config["val_augment"] is True and off.config["val_augment"] is False
    assert on.history[-1]["alphas"] != off.history[-1]["alphas"]
    assert search(TINY, method="darts").config["val_augment"] is False  # paper C.4
    assert search(TINY, method="betadarts").config["val_augment"] is True


def test_files_and_json_lines(tmp_path):
    out = str(tmp_path / "run")
    result = search(TINY, epochs=2, out=out, plot=True)
    lines = [json.loads(line) for line in open(os.path.join(out, loop.LOG_NAME))]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["alphas"] == result.history[-1]["alphas"]
    saved = json.load(open(os.path.join(out, loop.RESULT_NAME)))
    assert saved["genotype"] == result.genotype
    assert os.path.getsize(os.path.join(out, loop.PLOT_NAME)) > 1000
    with pytest.raises(UsageError, match="--resume"):
        search(TINY, epochs=2, out=out)  # never overwrite a finished search


def _interrupt_at(monkeypatch, epoch_to_fail):
    real = loop._Searcher.run_epoch

    def run_epoch(self, epoch):
        if epoch == epoch_to_fail:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(loop._Searcher, "run_epoch", run_epoch)


@pytest.mark.parametrize("method,update", [("darts", "a2m"), ("sdarts-rs", "sam"), ("pcdarts", "usam")])
def test_resume_gives_identical_alphas(tmp_path, monkeypatch, method, update):
    cfg = TINY.replace(epochs=2, method=method, optimizer=update)
    full = search(cfg, out=str(tmp_path / "full"))
    out = str(tmp_path / "cut")
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(KeyboardInterrupt):
            search(cfg, out=out)
    assert torch.load(os.path.join(out, ckpt_mod.CHECKPOINT_NAME), weights_only=False)["epoch"] == 1
    resumed = search(cfg, out=out, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(full.history, resumed.history):
        assert a["alphas"] == b["alphas"] and a["train_loss"] == b["train_loss"]
    assert resumed.genotype == full.genotype
    with pytest.raises(UsageError, match="other settings"):
        search(cfg, out=out, resume=True, lr=0.1)


def test_crash_mid_checkpoint_keeps_previous(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    cfg = TINY.replace(epochs=2)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if obj["epoch"] == 2:
            f.write(b"partial garbage")  # half-written file, then the process dies
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(ckpt_mod.torch, "save", failing_save)
        with pytest.raises(OSError):
            search(cfg, out=out)
    assert sorted(os.listdir(out)) == [ckpt_mod.CHECKPOINT_NAME, loop.LOG_NAME]  # no temporary left
    state = ckpt_mod.load_checkpoint(os.path.join(out, ckpt_mod.CHECKPOINT_NAME))
    assert state["epoch"] == 1
    resumed = search(cfg, out=out, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    full = search(cfg, out=str(tmp_path / "full"))
    assert resumed.history[-1]["alphas"] == full.history[-1]["alphas"]


def test_bad_settings():
    with pytest.raises(SearchError, match="--epochs"):
        search(TINY, epochs=0)
    with pytest.raises(ValueError, match="unknown method"):
        Method.from_name("enas")
    with pytest.raises(ValueError, match="unknown search space"):
        search(TINY, space="nope")
    if not torch.cuda.is_available():
        with pytest.raises(SearchError, match="no CUDA"):
            search(TINY, device="cuda")


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

    assert result.benchmark == BenchmarkTable.load(nats_bench_csv).lookup(result.genotype)
    assert all(set(h["benchmark"]) == set(result.benchmark) for h in result.history)
    saved = json.load(open(tmp_path / "r" / loop.RESULT_NAME))
    assert saved["benchmark"] == result.benchmark
