"""Data for training a genotype from scratch (DARTS evaluation protocol).

Datasets are those of the search (:data:`flatarch.reference_spaces.data.DATASETS`); the offline
``digits`` demo holds out its last 360 images as the test set.

The training set comes from the shared data module (:func:`flatarch.reference_spaces.data.load_dataset`,
uint8 images in memory); the test set is read here (CIFAR through torchvision, ImageNet16-120 from
its ``val_data`` pickle). Training images: random crop with zero padding (4 pixels on CIFAR, 2 on
ImageNet16-120), horizontal flip, normalisation, then Cutout (one ``length x length`` square
zeroed at a uniformly random centre, clipped at the border). Test images: normalisation only.
Under ``torch.distributed`` each process reads its own shard through a ``DistributedSampler``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

#: the offline digits demo: its last images are the test set, the rest the training set
DIGITS_TEST_IMAGES = 360


class Cutout:
    """Zero one ``length x length`` square of a ``C x H x W`` tensor, centred uniformly at random
    (DeVries & Taylor 2017); draws from torch's global generator, so it follows the epoch seed."""

    def __init__(self, length: int):
        if length < 0:
            raise ValueError(f"cutout length must be >= 0, got {length}")
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.length == 0:
            return img
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, (1,)))
        cx = int(torch.randint(w, (1,)))
        half = self.length // 2
        y0, y1 = max(cy - half, 0), min(cy + half, h)
        x0, x1 = max(cx - half, 0), min(cx + half, w)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0.0
        return img


class ImageTensorDataset(Dataset):
    """``uint8 [N, C, H, W]`` images and labels; item ``i`` is ``(transform(images[i] / 255), label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 [N, C, H, W] images with N labels, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels.long(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


@dataclass
class LoaderConfig:
    dataset: str = "cifar10"
    data_dir: str | None = None
    batch_size: int = 96
    cutout: int = 16
    workers: int = 2
    download: bool = False


def train_transform(mean, std, size: int, padding: int, flip: bool, cutout: int):
    from torchvision import transforms as T

    steps = [T.RandomCrop(size, padding=padding)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.Normalize(mean, std), Cutout(cutout)]
    return T.Compose(steps)


def _cifar_test(name: str, data_dir: str | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    from ..data import DataError

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = data_dir or "data"
    try:
        ds = cls(root, train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError; a damaged pickle anything
        raise DataError(f"{name}: test set not found or corrupted under {os.path.abspath(root)} "
                        f"({type(exc).__name__}: {exc}); pass --download, or --data-dir pointing at it") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def imagenet16_test(data_dir: str | None, classes: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet16 validation pickle ``val_data`` (dict with ``data`` ``[n, 768]`` uint8,
    channel-major, and 1-based ``labels``), restricted to labels ``<= classes`` (then 0-based)."""
    from ..data import DataError
    from ..data.datasets import read_imagenet16_batch

    fix = "pass --data-dir to the folder holding the ImageNet16 pickle batches"
    root = data_dir or "data"
    candidates = [os.path.join(root, "val_data"), os.path.join(root, "ImageNet16", "val_data")]
    path = next((c for c in candidates if os.path.isfile(c)), None)
    if path is None:
        where = " or ".join(os.path.abspath(c) for c in candidates)
        raise DataError(f"imagenet16-120: test batch val_data not found at {where}; {fix}")
    data, labels = read_imagenet16_batch(path, classes, fix)
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def datasets_for(cfg: LoaderConfig) -> tuple[Dataset, Dataset, int]:
    """``(train set with augmentation, test set, number of classes)`` of ``cfg.dataset``."""
    from torchvision import transforms as T

    from ..data import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    if cfg.dataset == "digits":
        n = len(data.labels) - DIGITS_TEST_IMAGES
        test_images, test_labels = data.images[n:], data.labels[n:]
        data = data.subset(n)
    elif cfg.dataset == "imagenet16-120":
        test_images, test_labels = imagenet16_test(cfg.data_dir)
    else:
        test_images, test_labels = _cifar_test(cfg.dataset, cfg.data_dir, cfg.download)
    train_tf = train_transform(data.mean, data.std, data.image_size, data.crop_padding, data.flip, cfg.cutout)
    test_tf = T.Normalize(data.mean, data.std)
    return (ImageTensorDataset(data.images, data.labels, train_tf),
            ImageTensorDataset(test_images, test_labels, test_tf), data.num_classes)


def make_loaders(cfg: LoaderConfig, train_set: Dataset | None = None,
                 test_set: Dataset | None = None) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and ordered test loader (sharded per process when distributed)."""
    if train_set is None or test_set is None:
        train_set, test_set, _ = datasets_for(cfg)
    distributed = dist.is_available() and dist.is_initialized()
    train_sampler = DistributedSampler(train_set, shuffle=True) if distributed else None
    test_sampler = DistributedSampler(test_set, shuffle=False) if distributed else None
    pin = torch.cuda.is_available()
    train = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
                       num_workers=cfg.workers, pin_memory=pin)
    test = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, sampler=test_sampler,
                      num_workers=cfg.workers, pin_memory=pin)
    return train, test
