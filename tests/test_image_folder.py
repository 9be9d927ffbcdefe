"""``--dataset imagenet``: a search over an ImageFolder tree (a tiny one the test writes), PC-DARTS'
per-class subsets, batches that do not depend on the loader processes, and ranks' shards that are
the one-device batches."""

import json
import os

import numpy as np
import pytest
import torch
from flatarch.reference_spaces.data.image_folder import FolderImages, LoaderStream, load_image_folder
from flatarch.reference_spaces.engine.methods import METHODS

from flatarch.cli import main

CLASSES, PER_CLASS = 3, 80


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """``ROOT/train/class-K/img-N.png``: 3 classes of 80 random 24x20 colour images."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        folder = root / "train" / f"class-{c}"
        folder.mkdir(parents=True)
        for n in range(PER_CLASS):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            pixels[..., c] //= 4  # something per class to learn
            Image.fromarray(pixels).save(folder / f"img-{n}.png")
    return str(root)


def test_pc_darts_subsets_per_class(image_folder):
    data = load_image_folder(image_folder)
    weights, arch = data.split()
    labels = torch.tensor([label for _, label in data.samples])
    assert torch.bincount(labels[weights]).tolist() == [8] * CLASSES  # 10% of 80
    assert torch.bincount(labels[arch]).tolist() == [2] * CLASSES  # 2.5% of 80
    assert not set(weights.tolist()) & set(arch.tolist())
    assert torch.equal(data.split()[0], weights)  # the same subsets for every search


def test_batches_do_not_depend_on_loader_processes_and_shards_make_the_global_batch(image_folder):
    data = load_image_folder(image_folder)
    weights, _ = data.split()

    def batches(workers, shard=(0, 1)):
        images = FolderImages(data, 16, True, seed=1, stream_id=0)
        stream = LoaderStream(images, weights, 6, 1, 0, torch.device("cpu"), shard, workers=workers)
        return list(stream.epoch(2))

    one = batches(0)
    assert len(one) == 4 and one[0][0].shape == (6, 3, 16, 16)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, batches(2)))
    halves = zip(batches(0, (0, 2)), batches(0, (1, 2)))
    assert all(torch.equal(torch.cat([a[0], b[0]]), x) and torch.equal(torch.cat([a[1], b[1]]), y)
               for (a, b), (x, y) in zip(halves, one))
    assert not torch.equal(one[0][0], list(LoaderStream(FolderImages(data, 16, True, 1, 0), weights, 6, 1, 0,
                                                        torch.device("cpu"), workers=0).epoch(3))[0][0])


def test_an_image_folder_search_runs_from_the_cli(image_folder, tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["search", "--space", "darts", "--method", "pcdarts", "--optimizer", "a2m", "--dataset", "imagenet",
            "--data-dir", image_folder, "--image-size", "64", "--loader-workers", "2", "--batch-size", "3",
            "--epochs", "1", "--channels", "4", "--cells", "1", "--lr-warmup-epochs", "2", "--no-plot",
            "--no-progress", "--out", out]
    assert main(args) == 0
    record = json.loads(open(os.path.join(out, "search.jsonl")).readline())
    assert record["step"]["steps"] == 2 and record["lr"] == pytest.approx(0.025 / 2)  # 6 arch images: 2 batches of 3
    assert json.load(open(os.path.join(out, "result.json")))["config"]["image_size"] == 64
    assert "epoch 1/1  train" in capsys.readouterr().out


def test_imagenet_settings_are_refused_where_they_do_not_apply(image_folder, tmp_path, capsys):
    assert main(["search", "--image-size", "64", "--out", str(tmp_path / "a")]) == 2
    assert "--image-size applies to --dataset imagenet" in capsys.readouterr().err
    assert main(["search", "--dataset", "imagenet", "--data-dir", image_folder, "--loader-workers", "0",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--dataset imagenet searches the DARTS space" in capsys.readouterr().err
    assert main(["search", "--space", "darts", "--dataset", "imagenet", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "c")]) == 2
    assert "one folder of images per class" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c")


def test_the_imagenet_recipe_is_pc_darts_imagenet_search():
    recipe = METHODS["pcdarts"].recipe("imagenet", "darts")
    assert {k: recipe[k] for k in ("batch_size", "lr", "lr_min", "arch_lr", "warmup_epochs", "lr_warmup_epochs",
                                   "partial_channels")} == \
        {"batch_size": 1024, "lr": 0.5, "lr_min": 0.0, "arch_lr": 6e-3, "warmup_epochs": 35, "lr_warmup_epochs": 5,
         "partial_channels": 2}  # K = 2: model_search_imagenet.py L34-36


def test_after_the_lr_warm_up_the_weights_follow_the_cosine():
    """PC-DARTS' warm-up sets the rate of its first epochs only (train_search_imagenet.py L150-L158); torch's
    cosine computes each epoch's rate from the last one's, so a warm-up rate left in place would shift
    every later one (by 1.6% over PC-DARTS' 50 epochs)."""
    import math

    from flatarch.reference_spaces.engine import search

    lr, epochs = 0.1, 4
    result = search(dataset="digits", subset=32, batch_size=8, channels=4, cells_per_stage=1, epochs=epochs,
                    max_batches=1, lr=lr, lr_min=0.0, lr_warmup_epochs=2, early_stop=0, progress=False, plot=False)
    cosine = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert [r["lr"] for r in result.history] == pytest.approx([lr / 2, lr, *cosine[2:]], rel=1e-12)
