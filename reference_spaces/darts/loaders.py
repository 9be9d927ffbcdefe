"""Data for training a genotype from scratch (DARTS evaluation protocol).

Datasets are those of the search (:data:`flatarch.reference_spaces.data.DATASETS`); the offline
``digits`` demo holds out its last 360 images as the test set.

The training set comes from the shared data module (:func:`flatarch.reference_spaces.data.load_dataset`,
uint8 images in memory); the test set is read here (CIFAR through torchvision, ImageNet16-120 from
its ``val_data`` pickle). Training images: random crop with zero padding (4 pixels on CIFAR, 2 on
ImageNet16-120), horizontal flip, normalisation, then Cutout (one ``length x length`` square
zeroed at a uniformly random centre, clipped at the border). Test images: normalisation only.
Under ``torch.distributed`` each process reads its own shard through a ``DistributedSampler``.

Two ways to produce the batches (:func:`make_loaders`), the same augmentation:

* a torchvision ``DataLoader`` with worker processes, the transforms applied image by image;
* :class:`DeviceLoader` (``device_data``, the default on CUDA): the uint8 images held on the
  device once, each batch gathered and augmented there in a few kernels
  (:mod:`flatarch.reference_spaces.data.augment`), with no worker processes, no host-to-device
  copy per batch and no host synchronisation; the shuffle and the shards are those of a
  ``DistributedSampler`` with the run's seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from flatarch.transfer import to_device

from ..data import augment

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


@dataclass(frozen=True)
class Augmentation:
    """What is done to each image after scaling it to ``[0, 1]``: random crop with ``padding``
    zero pixels (0: none), horizontal flip, normalisation, cutout of ``cutout`` pixels (0: none)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    padding: int = 0
    flip: bool = False
    cutout: int = 0

    def transform(self, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The same, image by image, with torchvision (what the ``DataLoader`` path applies)."""
        from torchvision import transforms as T

        steps: list[Callable] = [T.RandomCrop(size, padding=self.padding)] if self.padding else []
        if self.flip:
            steps.append(T.RandomHorizontalFlip())
        steps.append(T.Normalize(self.mean, self.std))
        if self.cutout:
            steps.append(Cutout(self.cutout))
        return T.Compose(steps)


class ImageTensorDataset(Dataset):
    """``uint8 [N, C, H, W]`` images and labels; item ``i`` is ``(transform(images[i] / 255), label)``.

    ``augmentation``, where given, describes ``transform`` (and is its default), so that a
    :class:`DeviceLoader` can apply the same to whole batches on the device.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None,
                 augmentation: Augmentation | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 [N, C, H, W] images with N labels, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        if transform is None and augmentation is not None:
            transform = augmentation.transform(int(images.shape[-1]))
        self.images, self.labels, self.transform = images, labels.long(), transform
        self.augmentation = augmentation

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
    #: batches made on ``device`` by a :class:`DeviceLoader` instead of a worker ``DataLoader``
    device_data: bool = False
    device: str = "cpu"
    seed: int = 0  # the DeviceLoader's shuffle and augmentation


def train_transform(mean, std, size: int, padding: int, flip: bool, cutout: int):
    return Augmentation(tuple(mean), tuple(std), padding, flip, cutout).transform(size)


class DeviceLoader:
    """Batches ``(x, y)`` of an :class:`ImageTensorDataset` made on ``device``: the images held there
    as uint8 once, each batch gathered, scaled, augmented (the dataset's :class:`Augmentation`) and
    normalised there.

    The order of epoch ``e`` is a ``DistributedSampler``'s with ``seed`` (``randperm`` seeded with
    ``seed + e`` when shuffling, padded to a multiple of ``world`` with its first indices, every
    ``world``-th from ``rank``), so the shards are exactly those of the ``DataLoader`` path; the last
    batch may be partial, as a ``DataLoader``'s. The augmentation draws come from a CPU generator
    seeded from ``(seed, e, rank)`` and reach the device in one copy per epoch that does not wait
    for it. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, dataset: ImageTensorDataset, batch_size: int, *, shuffle: bool, device: torch.device | str,
                 seed: int = 0, rank: int = 0, world: int = 1):
        if dataset.augmentation is None:
            raise ValueError("a DeviceLoader needs an ImageTensorDataset with an augmentation")
        self.device = torch.device(device)
        self.images = to_device(dataset.images, self.device)
        self.labels = to_device(dataset.labels, self.device)
        self.augmentation = aug = dataset.augmentation
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(aug.mean, device=self.device).view(shape)
        self.std = torch.tensor(aug.std, device=self.device).view(shape)
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This process's image indices for the current epoch, in order (a ``DistributedSampler``'s)."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        total = math.ceil(n / self.world) * self.world
        if total > n:
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world]

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.labels) / self.world) / self.batch_size)

    def plan(self) -> torch.Tensor:
        """``[n, 6]`` int64 on the host: per image of the epoch, its index, crop offsets (row, column),
        flip flag and cutout centre (row, column), drawn batch by batch (:func:`augment.draw_plan`)."""
        aug = self.augmentation
        h, w = self.images.shape[-2:]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 1_009 + self.rank) % (2**63))
        return augment.draw_plan(self.indices().split(self.batch_size), g, pad=aug.padding, flip=aug.flip,
                                 cutout_length=aug.cutout, height=h, width=w)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        aug = self.augmentation
        plan = self.plan()
        sizes = [len(b) for b in plan.split(self.batch_size)]
        for rows in to_device(plan, self.device).split(sizes):
            x = augment.apply_plan(self.images, rows, self.mean, self.std, pad=aug.padding, flip=aug.flip,
                                   cutout_length=aug.cutout)
            yield x, self.labels[rows[:, 0]]


def _cifar_test(name: str, data_dir: str | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    from ..data import DataError

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = data_dir or "data"
    try:
        ds = cls(root, train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError; a damaged pickle anything
        hint = (f"the download failed; fetch {cls.url} by hand and unpack it there" if download
                else "pass --download, or --data-dir pointing at it")
        raise DataError(f"{name}: test set not found or corrupted under {os.path.abspath(root)} "
                        f"({type(exc).__name__}: {exc}); {hint}") from None
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
    train_aug = Augmentation(data.mean, data.std, data.crop_padding, data.flip, cfg.cutout)
    test_aug = Augmentation(data.mean, data.std)
    return (ImageTensorDataset(data.images, data.labels, augmentation=train_aug),
            ImageTensorDataset(test_images, test_labels, augmentation=test_aug), data.num_classes)


def make_loaders(cfg: LoaderConfig, train_set: Dataset | None = None,
                 test_set: Dataset | None = None) -> tuple[DataLoader | DeviceLoader, DataLoader | DeviceLoader]:
    """Shuffled training loader and ordered test loader (sharded per process when distributed):
    :class:`DeviceLoader` s with ``cfg.device_data``, else worker ``DataLoader`` s."""
    if train_set is None or test_set is None:
        train_set, test_set, _ = datasets_for(cfg)
    distributed = dist.is_available() and dist.is_initialized()
    if cfg.device_data:
        if any(getattr(s, "augmentation", None) is None for s in (train_set, test_set)):
            raise ValueError("device_data needs ImageTensorDatasets that describe their augmentation")
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        train = DeviceLoader(train_set, cfg.batch_size, shuffle=True, device=cfg.device, seed=cfg.seed, rank=rank,
                             world=world)
        test = DeviceLoader(test_set, cfg.batch_size, shuffle=False, device=cfg.device, seed=cfg.seed, rank=rank,
                            world=world)
        return train, test
    train_sampler = DistributedSampler(train_set, shuffle=True) if distributed else None
    test_sampler = DistributedSampler(test_set, shuffle=False) if distributed else None
    pin = torch.cuda.is_available()
    train = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
                       num_workers=cfg.workers, pin_memory=pin)
    test = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, sampler=test_sampler,
                      num_workers=cfg.workers, pin_memory=pin)
    return train, test
