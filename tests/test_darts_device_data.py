"""The evaluation training's on-device batches: the same augmentation as the torchvision transforms,
the shards of a DistributedSampler, deterministic per (seed, epoch), and a training run on them."""

import pytest
import torch
import torchvision.transforms.functional as TF
from flatarch.reference_spaces.darts import loaders
from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork
from flatarch.reference_spaces.darts.known import DARTS_V2
from flatarch.reference_spaces.darts.train import TrainConfig, train
from flatarch.reference_spaces.data import augment
from torch.utils.data import DistributedSampler

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def dataset(n=40, size=16, padding=2, flip=True, cutout=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return loaders.ImageTensorDataset(images, labels, augmentation=loaders.Augmentation(MEAN, STD, padding, flip,
                                                                                         cutout))


def reference_image(image, draws, aug):
    """One image through torchvision's functional ops and the DataLoader path's Cutout, with given draws."""
    x = image.float() / 255.0
    _, h, w = x.shape
    if aug.padding:
        padded = TF.pad(x, [aug.padding] * 4, fill=0)
        x = TF.crop(padded, int(draws[1]), int(draws[2]), h, w)
    if aug.flip and draws[3]:
        x = TF.hflip(x)
    x = TF.normalize(x, MEAN, STD)
    if aug.cutout:
        half = aug.cutout // 2
        cy, cx = int(draws[4]), int(draws[5])
        x = x.clone()
        x[:, max(cy - half, 0):min(cy + half, h), max(cx - half, 0):min(cx + half, w)] = 0.0
    return x


@pytest.mark.parametrize("padding, flip, cutout", [(2, True, 6), (4, False, 0), (0, True, 5)])
def test_device_batches_equal_the_image_by_image_transforms_with_the_same_draws(padding, flip, cutout):
    ds = dataset(padding=padding, flip=flip, cutout=cutout)
    loader = loaders.DeviceLoader(ds, 16, shuffle=True, device="cpu", seed=3)
    loader.set_epoch(2)
    plan = loader.plan()
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16, 16, 8] and len(loader) == 3
    x = torch.cat([b for b, _ in batches])
    y = torch.cat([b for _, b in batches])
    assert x.shape == (40, 3, 16, 16) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(y, ds.labels[plan[:, 0]])
    for i, draws in enumerate(plan):
        torch.testing.assert_close(x[i], reference_image(ds.images[draws[0]], draws, ds.augmentation),
                                   rtol=1e-6, atol=1e-6)


def test_device_batches_have_the_statistics_of_the_dataloader_path():
    """Over many images, the random transforms of both paths give the same distribution."""
    ds = dataset(n=1000, size=16, padding=2, flip=True, cutout=6)
    torch.manual_seed(0)
    cpu = torch.stack([ds[i][0] for i in range(len(ds))])
    loader = loaders.DeviceLoader(ds, 250, shuffle=True, device="cpu", seed=0)
    device = torch.cat([x for x, _ in loader])
    for a, b in [(cpu, device)]:
        torch.testing.assert_close(a.mean(dim=(0, 2, 3)), b.mean(dim=(0, 2, 3)), rtol=0, atol=0.03)
        torch.testing.assert_close(a.std(dim=(0, 2, 3)), b.std(dim=(0, 2, 3)), rtol=0.03, atol=0)
        zeros_a, zeros_b = (a == 0).all(1).float().mean(), (b == 0).all(1).float().mean()
        assert abs(zeros_a - zeros_b) < 0.01 and zeros_b > 0.05  # the cutout holes (and the padding)


def test_device_order_is_deterministic_and_sharded_as_a_distributed_sampler():
    ds = dataset(n=21)
    first = loaders.DeviceLoader(ds, 4, shuffle=True, device="cpu", seed=5)
    again = loaders.DeviceLoader(ds, 4, shuffle=True, device="cpu", seed=5)
    for loader in (first, again):
        loader.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    first.set_epoch(2)
    assert not torch.equal(next(iter(first))[0], next(iter(again))[0])
    for shuffle in (True, False):
        shards = []
        for rank in range(2):
            loader = loaders.DeviceLoader(ds, 4, shuffle=shuffle, device="cpu", seed=5, rank=rank, world=2)
            sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=shuffle, seed=5)
            loader.set_epoch(3)
            sampler.set_epoch(3)
            assert loader.indices().tolist() == list(sampler)
            assert len(loader) == 3  # 11 images per process in batches of 4
            shards.append(set(loader.indices().tolist()))
        assert shards[0] | shards[1] == set(range(21))


def test_cutout_on_the_device_zeroes_the_clipped_square():
    x = torch.ones(3, 2, 8, 8)
    out = augment.cutout(x, torch.tensor([[0, 0], [4, 4], [7, 3]]), 4)
    holes = (out == 0).all(1)
    assert holes.sum(dim=(1, 2)).tolist() == [4, 16, 12]  # corner: 2x2; middle: 4x4; bottom edge: 3x4
    assert holes[1, 2:6, 2:6].all() and x.min() == 1.0


def test_make_loaders_chooses_the_path_and_refuses_undescribed_datasets():
    ds = dataset()
    cfg = loaders.LoaderConfig(batch_size=8, device_data=True, device="cpu", seed=1, workers=0)
    train_loader, test_loader = loaders.make_loaders(cfg, ds, ds)
    assert isinstance(train_loader, loaders.DeviceLoader) and train_loader.shuffle and not test_loader.shuffle
    plain, _ = loaders.make_loaders(loaders.LoaderConfig(batch_size=8, workers=0), ds, ds)
    assert isinstance(plain, torch.utils.data.DataLoader)
    with pytest.raises(ValueError, match="describe their augmentation"):
        loaders.make_loaders(cfg, torch.utils.data.TensorDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2)), ds)


def test_training_on_device_batches_resumes_exactly(tmp_path):
    ds = dataset(n=24, size=16, padding=2, flip=True, cutout=4)

    def run(out, epochs, resume=False, stop=None):
        torch.manual_seed(0)
        model = EvaluationNetwork(DARTS_V2, num_classes=10, C=4, layers=3, input_size=16)
        cfg = loaders.LoaderConfig(batch_size=8, device_data=True, device="cpu", seed=2)
        train_loader, test_loader = loaders.make_loaders(cfg, ds, ds)
        config = TrainConfig(epochs=epochs, drop_path_prob=0.2, stop_train_loss=stop)
        train(model, train_loader, test_loader, config, out_dir=str(out), resume=resume, log=None)
        return model

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 2, stop=1e9)  # stops after epoch 1
    checkpoint = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    checkpoint["stopped_early"] = False  # as if interrupted during epoch 2
    torch.save(checkpoint, tmp_path / "b" / "checkpoint.pt")
    resumed = run(tmp_path / "b", 2, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_cli_train_with_device_data(tmp_path, monkeypatch, capsys):
    import json

    from flatarch.cli import main as cli_main

    ds = dataset(n=16, size=32, padding=4, cutout=8)
    monkeypatch.setattr(loaders, "datasets_for", lambda cfg: (ds, ds, 10))
    made = []
    original = loaders.make_loaders
    monkeypatch.setattr(loaders, "make_loaders", lambda *a: made.append(original(*a)) or made[-1])
    out = tmp_path / "run"
    assert cli_main(["train", "--genotype", "PC_DARTS", "--dataset", "cifar10", "--epochs", "1", "--channels", "4",
                     "--cells", "1", "--batch-size", "8", "--device", "cpu", "--device-data", "--out", str(out)]) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert all(isinstance(loader, loaders.DeviceLoader) for loader in made[0])
    assert json.loads((out / "report.json").read_text())["config"]["device_data"] is True


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_epoch_on_device_batches_waits_for_the_device_once():
    import warnings

    from flatarch.reference_spaces.darts.train import _train_epoch

    ds = dataset(n=64, size=16, padding=2, flip=True, cutout=4)
    loader = loaders.DeviceLoader(ds, 16, shuffle=True, device="cuda", seed=0)
    torch.manual_seed(0)
    model = EvaluationNetwork(DARTS_V2, num_classes=10, C=4, layers=3, input_size=16).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    config = TrainConfig(epochs=1).resolved()
    _train_epoch(model, model, loader, optimizer, config, torch.device("cuda"), True, True)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _train_epoch(model, model, loader, optimizer, config, torch.device("cuda"), True, True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1  # reading the epoch's sums at its end


def test_a_training_epoch_on_device_batches_waits_once_audited_on_a_cpu():
    """The CPU suite's version of the test above (tests/host_syncs.py): auxiliary head, drop path
    and gradient clipping on, the only wait is the epoch's sums read at its end."""
    from flatarch.reference_spaces.darts.train import _train_epoch
    from host_syncs import HostSyncs

    ds = dataset(n=48, size=16, padding=2, flip=True, cutout=4)
    loader = loaders.DeviceLoader(ds, 16, shuffle=True, device="cpu", seed=0)
    torch.manual_seed(0)
    model = EvaluationNetwork(DARTS_V2, num_classes=10, C=4, layers=3, input_size=16, auxiliary=True)
    model.drop_path_prob = 0.2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    config = TrainConfig(epochs=1).resolved()
    assert config.grad_clip and config.auxiliary_weight
    with HostSyncs() as syncs:
        _train_epoch(model, model, loader, optimizer, config, torch.device("cpu"), False, False)
    assert [(s.what, s.function) for s in syncs.found] == [("tolist", "_train_epoch")], syncs.report()
    assert sum(syncs.found.values()) == 1
