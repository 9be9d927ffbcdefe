"""The three datasets of the NAS-Bench-201 table and the names they go by.

NAS-Bench-201 (Dong & Yang, ICLR 2020) reports every cell's accuracy on CIFAR-10, CIFAR-100 and
ImageNet16-120. flatarch calls them by the canonical names in :data:`DATASETS` (the table's column
order); :func:`canonical_dataset` accepts the usual spellings, and the official APIs
(``nas_201_api``, ``nats_bench``) want the names in :data:`OFFICIAL_DATASET_NAMES`.
"""

from __future__ import annotations

#: Canonical dataset names, in column order.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16-120")

#: Dataset names the official APIs use, per canonical name.
OFFICIAL_DATASET_NAMES: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet16-120": "ImageNet16-120",
}

_DATASET_ALIASES: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "c10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "c100": "cifar100",
    "imagenet16-120": "imagenet16-120",
    "imagenet16": "imagenet16-120",
    "imagenet": "imagenet16-120",
    "imagenet16_120": "imagenet16-120",
    "in16": "imagenet16-120",
    "in16-120": "imagenet16-120",
}


def canonical_dataset(name: str) -> str:
    """``'ImageNet16-120'``, ``'imagenet'``, ``'CIFAR-10'``... -> the canonical name in :data:`DATASETS`."""
    key = str(name).strip().lower()
    if key not in _DATASET_ALIASES:
        raise ValueError(f"unknown NAS-Bench-201 dataset {name!r}; use one of {', '.join(DATASETS)}")
    return _DATASET_ALIASES[key]
