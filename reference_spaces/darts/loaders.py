"""Data loaders for training a genotype from scratch (DARTS evaluation protocol).

Training images: random crop with 4-pixel padding (2 on 16x16 inputs), horizontal flip,
normalisation, then Cutout (one ``length x length`` square zeroed at a uniformly random centre,
clipped at the border). Test images: normalisation only. Under ``torch.distributed`` each
process reads its own shard through a ``DistributedSampler``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

#: per-channel mean and std (on the [0, 1] scale) of each training set
_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet16-120": ((0.4811, 0.4575, 0.4078), (0.2471, 0.2400, 0.2563)),
}


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


@dataclass
class LoaderConfig:
    dataset: str = "cifar10"
    data_dir: str = "data"
    batch_size: int = 96
    cutout: int = 16
    workers: int = 2
    download: bool = False


def transforms_for(dataset: str, cutout: int):
    """``(train_transform, test_transform)`` of the DARTS evaluation protocol."""
    from torchvision import transforms as T

    if dataset not in _STATS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(_STATS)}")
    mean, std = _STATS[dataset]
    size = 16 if dataset == "imagenet16-120" else 32
    train = T.Compose([T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip(), T.ToTensor(),
                       T.Normalize(mean, std), Cutout(cutout)])
    test = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    return train, test


def datasets_for(cfg: LoaderConfig) -> tuple[Dataset, Dataset]:
    """Full training set and test set of ``cfg.dataset`` with the evaluation transforms."""
    train_tf, test_tf = transforms_for(cfg.dataset, cfg.cutout)
    if cfg.dataset in ("cifar10", "cifar100"):
        from torchvision import datasets

        cls = datasets.CIFAR10 if cfg.dataset == "cifar10" else datasets.CIFAR100
        try:
            return (cls(cfg.data_dir, train=True, transform=train_tf, download=cfg.download),
                    cls(cfg.data_dir, train=False, transform=test_tf, download=cfg.download))
        except RuntimeError as exc:
            raise FileNotFoundError(
                f"{cfg.dataset} not found under {cfg.data_dir!r} ({exc}); pass --data-dir pointing at it, "
                "or --download to fetch it"
            ) from exc
    return _imagenet16(cfg, train_tf, test_tf)


def _imagenet16(cfg: LoaderConfig, train_tf, test_tf) -> tuple[Dataset, Dataset]:
    try:
        from flatarch.reference_spaces import data as shared_data  # the shared data module
    except ImportError as exc:
        raise ValueError(
            "ImageNet16-120 is read by flatarch.reference_spaces.data, which this installation lacks"
        ) from exc
    return shared_data.imagenet16_datasets(cfg.data_dir, train_transform=train_tf, test_transform=test_tf)


def make_loaders(cfg: LoaderConfig, train_set: Dataset | None = None,
                 test_set: Dataset | None = None) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader and ordered test loader (sharded per process when distributed)."""
    if train_set is None or test_set is None:
        train_set, test_set = datasets_for(cfg)
    distributed = dist.is_available() and dist.is_initialized()
    train_sampler = DistributedSampler(train_set, shuffle=True) if distributed else None
    test_sampler = DistributedSampler(test_set, shuffle=False) if distributed else None
    pin = torch.cuda.is_available()
    train = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
                       num_workers=cfg.workers, pin_memory=pin, drop_last=False,
                       persistent_workers=False)
    test = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, sampler=test_sampler,
                      num_workers=cfg.workers, pin_memory=pin)
    return train, test
