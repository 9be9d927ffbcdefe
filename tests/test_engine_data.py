"""Search data: the digits default, batch streams, ImageNet16 pickles, and data-directory errors."""

import os
import pickle

import numpy as np
import pytest
import torch
from flatarch.reference_spaces.data import BatchStream, DataError, load_dataset, split_half


def test_digits_default_is_offline_and_16x16():
    d = load_dataset("digits")
    assert d.images.shape == (1797, 1, 16, 16) and d.images.dtype == torch.uint8
    assert d.num_classes == 10 and set(d.labels.tolist()) == set(range(10))
    assert not d.flip and d.crop_padding == 2
    assert d.images.float().max() > 200  # 0..16 rescaled to 0..255


def test_split_and_stream_determinism():
    d = load_dataset("digits").subset(40)
    train, val = split_half(40)
    assert train.tolist() == list(range(20)) and val.tolist() == list(range(20, 40))
    s = BatchStream(d, train, 8, augment=True, seed=1, stream_id=0)
    assert len(s) == 2
    a = [x for x, _ in s.epoch(0)]
    b = [x for x, _ in s.epoch(0)]
    c = [x for x, _ in s.epoch(1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (8, 1, 16, 16) and a[0].dtype == torch.float32


def test_augmentation_crops_with_zero_padding():
    d = load_dataset("digits").subset(8)
    d.images = torch.full_like(d.images, 255)  # an all-white image shows the zero padding after a crop
    d.mean, d.std = (0.0,), (1.0,)
    plain = next(BatchStream(d, torch.arange(8), 8, augment=False, seed=0, stream_id=0).epoch(0))[0]
    assert torch.equal(plain, torch.ones_like(plain))
    aug = next(BatchStream(d, torch.arange(8), 8, augment=True, seed=0, stream_id=0).epoch(0))[0]
    assert aug.min() == 0 and aug.max() == 1
    # every image is a shifted window: the zero band is at most `padding` wide per side
    ones_per_row = aug[:, 0].sum(dim=2)
    assert (ones_per_row.max(dim=1).values >= 14).all()


def _write_imagenet16(folder, n=30, corrupt=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(1, 11):
        path = os.path.join(folder, f"train_data_batch_{i}")
        if corrupt == i:
            with open(path, "wb") as f:
                f.write(b"\x80\x04not a pickle")
            continue
        labels = rng.integers(1, 1001, size=n).tolist()
        labels[0], labels[1] = 1, 120  # the ends of the kept range
        with open(path, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, size=(n, 768), dtype=np.uint8), "labels": labels}, f)


def test_imagenet16_120_reads_pickles_and_filters_labels(tmp_path):
    _write_imagenet16(str(tmp_path / "ImageNet16"))
    d = load_dataset("imagenet16-120", str(tmp_path))
    assert d.images.shape[1:] == (3, 16, 16) and d.num_classes == 120
    assert d.labels.min() == 0 and d.labels.max() == 119
    assert len(d.labels) >= 20  # two kept per batch at least


def test_imagenet16_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match=r"train_data_batch_1.*--data-dir"):
        load_dataset("imagenet16-120", str(tmp_path))
    _write_imagenet16(str(tmp_path), corrupt=3)
    with pytest.raises(DataError, match=r"corrupt batch .*train_data_batch_3"):
        load_dataset("imagenet16-120", str(tmp_path))


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*--download"):
        load_dataset("cifar10", str(tmp_path))
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cifar100.*corrupted.*cifar-100-python"):
        load_dataset("cifar100", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
