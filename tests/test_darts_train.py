"""Training from scratch: a few steps with auxiliary head and drop path, exact resume, early stop
at a training-loss threshold, the CLI, and DDP on CPU (gloo, 2 processes)."""

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from flatarch.reference_spaces.darts import loaders
from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork
from flatarch.reference_spaces.darts.known import DARTS_V2
from flatarch.reference_spaces.darts.train import TrainConfig, TrainError, train
from torch.utils.data import DataLoader, TensorDataset

from flatarch.cli import main as cli_main


def data(n=24, size=16, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g))


def loaders_for(ds, batch=8):
    return DataLoader(ds, batch_size=batch, shuffle=True), DataLoader(ds, batch_size=batch)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return EvaluationNetwork(DARTS_V2, num_classes=10, C=4, layers=3, input_size=16, **kw)


def test_a_few_steps_with_auxiliary_head_and_drop_path(tmp_path):
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    aux_before = net.auxiliary_head.classifier.weight.clone()
    tl, te = loaders_for(data())
    cfg = TrainConfig(epochs=2, drop_path_prob=0.3, auxiliary_weight=0.4, lr=0.05)
    res = train(net, tl, te, cfg, out_dir=str(tmp_path), log=None)
    assert res.epochs_run == 2 and len(res.history) == 2
    assert [h["drop_path_prob"] for h in res.history] == [0.0, pytest.approx(0.15)]
    assert res.history[1]["lr"] < res.history[0]["lr"]  # cosine schedule
    assert 0.0 <= res.final_test_acc <= 100.0
    assert not torch.equal(net.auxiliary_head.classifier.weight, aux_before)  # the auxiliary loss trains it
    changed = [k for k, v in net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert len(changed) > 10
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["final_test_acc"] == res.final_test_acc and len(report["history"]) == 2
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "checkpoint.pt").exists()


def test_resume_gives_identical_weights(tmp_path):
    ds = data()
    cfg = TrainConfig(epochs=3, drop_path_prob=0.2)
    straight = model()
    train(straight, *loaders_for(ds), cfg, out_dir=str(tmp_path / "a"), log=None)

    interrupted = model()
    cfg_short = TrainConfig(epochs=3, drop_path_prob=0.2, stop_train_loss=1e9)  # stops after epoch 1
    res = train(interrupted, *loaders_for(ds), cfg_short, out_dir=str(tmp_path / "b"), log=None)
    assert res.epochs_run == 1 and res.stopped_early
    # simulate the crash: the checkpoint says "not stopped", as after an interrupted epoch 2
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    ckpt["stopped_early"] = False
    torch.save(ckpt, tmp_path / "b" / "checkpoint.pt")
    # a fresh process would rebuild the model with another initialisation: the checkpoint must win
    resumed = model(seed=123)
    torch.manual_seed(999)  # and the global RNG state must not matter
    res = train(resumed, *loaders_for(ds), cfg, out_dir=str(tmp_path / "b"), log=None, resume=True)
    assert res.resumed_from_epoch == 1 and res.epochs_run == 3
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_resume_refuses_fewer_epochs_and_extends_to_more(tmp_path):
    ds = data(n=8)
    train(model(), *loaders_for(ds), TrainConfig(epochs=2), out_dir=str(tmp_path), log=None)
    with pytest.raises(ValueError, match="epochs: 2 -> 1"):
        train(model(), *loaders_for(ds), TrainConfig(epochs=1), out_dir=str(tmp_path), log=None, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(model(), *loaders_for(ds), TrainConfig(epochs=3), out_dir=str(tmp_path), log=None)
    res = train(model(), *loaders_for(ds), TrainConfig(epochs=3), out_dir=str(tmp_path), log=None, resume=True)
    assert res.resumed_from_epoch == 2 and res.epochs_run == 3


def test_resume_refuses_another_genotype(tmp_path):
    ds = data(n=8)
    train(model(), *loaders_for(ds), TrainConfig(epochs=1), out_dir=str(tmp_path), log=None,
          extra_state={"genotype": "A"})
    with pytest.raises(ValueError, match="genotype"):
        train(model(), *loaders_for(ds), TrainConfig(epochs=1), out_dir=str(tmp_path), log=None,
              extra_state={"genotype": "B"}, resume=True)


def test_models_returning_plain_logits_train_too():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    res = train(net, *loaders_for(data(n=8)), TrainConfig(epochs=2, lr=0.01), log=None)
    assert res.epochs_run == 2 and 0 <= res.final_test_acc <= 100


def test_stop_at_training_loss_threshold():
    ds = data(n=8)
    res = train(model(), *loaders_for(ds), TrainConfig(epochs=50, stop_train_loss=100.0), log=None)
    assert res.stopped_early and res.epochs_run == 1 and "test_acc" in res.history[-1]


def test_amp_on_cpu_and_bad_numbers_are_clear_errors():
    with pytest.raises(ValueError, match="CUDA"):
        train(model(), *loaders_for(data(n=8)), TrainConfig(epochs=1, amp=True), log=None)
    for settings, message in [({"lr": float("nan")}, "--lr must be"), ({"lr": float("inf")}, "--lr must be"),
                              ({"lr_min": float("nan")}, "--lr-min must be"), ({"channels": 0}, "--channels must"),
                              ({"cells_per_stage": 0}, "--cells must"), ({"lr": 0.01, "lr_min": 0.1}, "--lr-min"),
                              ({"drop_path_prob": 1.0}, "--drop-path-prob")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**settings)


def test_train_transform_and_tensor_dataset():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    tf = loaders.train_transform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 16, 2, True, cutout=8)
    ds = loaders.ImageTensorDataset(images, torch.arange(4), tf)
    x, y = ds[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert (x == 0).all(0).sum() >= 16  # the cutout square (at least a clipped quarter of 8x8)
    with pytest.raises(ValueError, match="uint8"):
        loaders.ImageTensorDataset(images.float(), torch.arange(4))


def test_imagenet16_test_split_reader(tmp_path):
    import pickle

    data = torch.randint(0, 256, (5, 768), dtype=torch.uint8).numpy()
    with open(tmp_path / "val_data", "wb") as f:
        pickle.dump({"data": data, "labels": [1, 120, 121, 7, 1000]}, f)
    images, labels = loaders.imagenet16_test(str(tmp_path))
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 119, 6]
    assert torch.equal(images[0].flatten(), torch.from_numpy(data[0]))


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    out = loaders.Cutout(16)(img)
    zeros = (out == 0).all(0).sum().item()
    assert 64 <= zeros <= 256 and img.min() == 1.0  # clipped at the border at worst; input untouched


TINY_CLI = ["--epochs", "1", "--channels", "4", "--cells", "1", "--batch-size", "8", "--loader-workers", "0",
            "--device", "cpu"]


def _snapshot(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder)) if (folder / n).is_file()}


def test_cli_train_end_to_end(tmp_path, monkeypatch, capsys):
    ds = data(n=16, size=32)
    monkeypatch.setattr(loaders, "datasets_for", lambda cfg: (ds, ds, 10))
    out = tmp_path / "run"
    rc = cli_main(["train", "--genotype", "PC_DARTS", "--dataset", "cifar10", *TINY_CLI, "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "final test accuracy" in text and "parameters" in text
    assert {"report.json", "learning_curve.png", "checkpoint.pt", "genotype.json"} <= set(os.listdir(out))
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["channels"] == 4 and report["config"]["cells_per_stage"] == 1
    before = _snapshot(out)
    # the same folder again: refused without --resume; --resume of a finished run says it is complete
    assert cli_main(["train", "--genotype", "PC_DARTS", "--dataset", "cifar10", *TINY_CLI, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    rc = cli_main(["train", "--genotype", str(out / "genotype.json"), "--dataset", "cifar10", *TINY_CLI,
                   "--out", str(out), "--resume"])
    assert rc == 0 and "complete" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_cli_refused_resume_changes_nothing(tmp_path, monkeypatch, capsys):
    """A second training of another genotype or with other settings into a run's folder is refused
    before anything is written: genotype.json stays the run's."""
    ds = data(n=16, size=32)
    monkeypatch.setattr(loaders, "datasets_for", lambda cfg: (ds, ds, 10))
    out = tmp_path / "run"
    assert cli_main(["train", "--genotype", "DARTS_V2", "--dataset", "cifar10", *TINY_CLI, "--epochs", "2",
                     "--out", str(out)]) == 0
    before = _snapshot(out)
    for change, expect in [(["--genotype", "PC_DARTS"], "genotype"), (["--lr", "0.1"], "lr: 0.025 -> 0.1"),
                           (["--seed", "3"], "seed: 0 -> 3"), (["--batch-size", "16"], "batch_size: 8 -> 16")]:
        args = ["train", "--genotype", "DARTS_V2", "--dataset", "cifar10", *TINY_CLI, "--epochs", "2",
                "--out", str(out), "--resume", *change]
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert _snapshot(out) == before
    (out / "checkpoint.pt").write_bytes(b"garbage")
    damaged = _snapshot(out)
    assert cli_main(["train", "--genotype", "DARTS_V2", "--dataset", "cifar10", *TINY_CLI, "--epochs", "2",
                     "--out", str(out), "--resume"]) == 2
    assert "checkpoint.pt is damaged" in capsys.readouterr().err and _snapshot(out) == damaged


def test_cli_train_on_digits_offline_and_bad_input(tmp_path, capsys):
    out = tmp_path / "digits"
    assert cli_main(["train", "--genotype", "DARTS_V2", "--epochs", "1", "--channels", "4", "--batch-size", "64",
                     "--loader-workers", "0", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["dataset"] == "digits" and 0 <= report["final_test_acc"] <= 100
    file = tmp_path / "a-file"
    file.write_text("x")
    for args, expect in [(["--out", str(file)], "is a file"), (["--lr", "nan"], "--lr must be"),
                         (["--amp", "--device", "cpu"], "--amp"), (["--threads", "-1"], "--threads"),
                         (["--resume"], "--resume needs --out")]:
        assert cli_main(["train", "--genotype", "DARTS_V2", *args]) == 2
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, err
    assert file.read_text() == "x"


def test_cli_resume_of_a_missing_folder_starts_and_says_so(tmp_path, capsys):
    out = tmp_path / "new"
    assert cli_main(["train", "--genotype", "DARTS_V2", "--epochs", "1", "--channels", "4", "--batch-size", "64",
                     "--loader-workers", "0", "--device", "cpu", "--out", str(out), "--resume"]) == 0
    assert "no run in" in capsys.readouterr().err and (out / "report.json").exists()
    # stopped after its last checkpoint but before its report (killed then): --resume writes the report
    saved = json.loads((out / "report.json").read_text())
    (out / "report.json").unlink()
    assert cli_main(["train", "--genotype", "DARTS_V2", "--epochs", "1", "--channels", "4", "--batch-size", "64",
                     "--loader-workers", "0", "--device", "cpu", "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert "is complete" in capsys.readouterr().err and again["history"] == saved["history"]


def test_cli_interrupt_is_one_clean_line(tmp_path, monkeypatch, capsys):
    from flatarch.reference_spaces.darts import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_genotype", interrupted)
    assert cli_main(["train", "--genotype", "DARTS_V2", "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    # stopped before a checkpoint recorded its settings: a bare --resume would have nothing to go on
    assert "interrupted; no epoch had ended, so nothing records the settings yet; continue with: the same command " \
           f"plus --out {tmp_path / 'o'} --resume" in err
    assert "Traceback" not in err


def test_cli_resume_takes_the_settings_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    """``flatarch train --out X --resume`` continues without retyping the genotype, the dataset or any
    option; a larger --epochs extends it; an option given that differs is refused by name."""
    ds = data(n=16, size=32)
    monkeypatch.setattr(loaders, "datasets_for", lambda cfg: (ds, ds, 10))
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert cli_main(["train", "--genotype", "PC_DARTS", "--dataset", "cifar10", *TINY_CLI, "--epochs", "2",
                     "--out", str(straight)]) == 0
    assert cli_main(["train", "--genotype", "PC_DARTS", "--dataset", "cifar10", *TINY_CLI, "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--out", str(out), "--resume", "--lr", "0.1"]) == 2
    assert "lr: 0.025 -> 0.1" in capsys.readouterr().err
    assert cli_main(["train", "--out", str(out), "--resume"]) == 0
    assert "is complete (1 epochs)" in capsys.readouterr().err
    assert cli_main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert "resumed from" in capsys.readouterr().out
    extended, whole = (json.loads((f / "report.json").read_text()) for f in (out, straight))
    assert extended["config"]["genotype"] == whole["config"]["genotype"] and extended["epochs_run"] == 2
    assert extended["config"]["channels"] == 4 and extended["config"]["dataset"] == "cifar10"
    # the first epoch is the straight run's (the cosine starts at lr either way); the second is continued from it
    assert extended["history"][0]["train_loss"] == whole["history"][0]["train_loss"]


def _fake_imagenet16(folder, per_batch=4, val=6):
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(1, 11):
        with open(folder / f"train_data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 768), dtype=np.uint8),
                         "labels": list(rng.integers(1, 121, per_batch))}, f)
    with open(folder / "val_data", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (val, 768), dtype=np.uint8),
                     "labels": list(rng.integers(1, 121, val))}, f)


def test_the_authors_recipe_trains_imagenet16_without_cutout():
    """AsquaredM's ImageNet16 transforms append no Cutout (optimizers/darts/utils.py L139-156);
    the CIFAR ones do, and a setting the command gives is the command's."""
    authors = TrainConfig(recipe="a2m-authors")
    assert authors.resolved("imagenet16-120").cutout == 0
    assert authors.resolved("cifar10").cutout == authors.resolved("cifar100").cutout == 16
    assert TrainConfig().resolved("imagenet16-120").cutout == 16
    assert TrainConfig(recipe="a2m-authors", cutout=8).resolved("imagenet16-120").cutout == 8
    assert TrainConfig(recipe="paper").recipe is None  # the default, recorded as such
    with pytest.raises(TrainError, match="--recipe 'original' is not a training recipe; choose one of: paper, "
                                         "a2m-authors"):
        TrainConfig(recipe="original")


@pytest.mark.parametrize("recipe,cutout", [([], 16), (["--recipe", "a2m-authors"], 0)])
def test_cli_train_imagenet16_from_its_pickles(tmp_path, capsys, recipe, cutout):
    data = tmp_path / "ImageNet16"
    data.mkdir()
    _fake_imagenet16(data)
    out = tmp_path / "run"
    rc = cli_main(["train", "--genotype", "DARTS_V1", "--dataset", "imagenet16-120", "--data-dir", str(tmp_path),
                   *TINY_CLI, *recipe, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["dataset"] == "imagenet16-120" and report["epochs_run"] == 1
    assert report["config"]["cutout"] == cutout and report["config"]["recipe"] == (recipe[1] if recipe else None)
    assert report["recipe"]["name"] == (recipe[1] if recipe else "paper")
    assert ("_data_transforms_imagenet16" in report["recipe"]["source"]) == bool(recipe)
    # 120 classes, 16x16 inputs: the classifier and auxiliary head are sized for them
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert state["classifier.weight"].shape[0] == 120 and state["auxiliary_head.classifier.weight"].shape[0] == 120


def test_cli_reports_missing_data(tmp_path, capsys):
    rc = cli_main(["train", "--genotype", "DARTS_V2", "--dataset", "imagenet16-120", "--data-dir", str(tmp_path),
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "train_data_batch_1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_reports_bad_input(capsys):
    assert cli_main(["train", "--genotype", "NOPE"]) == 2
    assert "known names" in capsys.readouterr().err


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ds = data(n=16)
    tl = DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, shuffle=True))
    te = DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, shuffle=False))
    net = model()
    res = train(net, tl, te, TrainConfig(epochs=2, drop_path_prob=0.2), out_dir=out_dir, log=None)
    torch.save({"state": net.state_dict(), "acc": res.final_test_acc}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_on_cpu(tmp_path):
    # DDP's constructor imports torch._dynamo (~5 s); importing it once here and forking the workers
    # keeps this test short (spawned workers would each pay the import and the interpreter start).
    import torch._dynamo  # noqa: F401

    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k, v in r0["state"].items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN statistics are per process (DDP broadcasts them from rank 0 before each forward)
        assert torch.equal(v, r1["state"][k]), k
    assert r0["acc"] == r1["acc"]  # metrics are reduced over both processes
    assert (tmp_path / "report.json").exists() and (tmp_path / "checkpoint.pt").exists()
    single = model()
    initial = single.state_dict()
    assert not torch.equal(initial["classifier.weight"], r0["state"]["classifier.weight"])


def test_the_learning_curve_ticks_whole_epochs(monkeypatch, tmp_path):
    from flatarch.reference_spaces.darts import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 10.0 * e, "test_loss": 2.0, "test_acc": 10.0}
               for e in (1, 2)]
    plots.plot_learning_curve(history, tmp_path / "curve.png")
    (fig,) = figures
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # a 2-epoch run drew 1.2, 1.4, ...
