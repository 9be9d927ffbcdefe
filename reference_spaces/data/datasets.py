"""Loading a search dataset's *training* images into memory.

The search only ever uses a dataset's training set (split 50/50 into search-train and
search-validation), so each loader returns that set as a uint8 tensor ``[N, C, H, W]`` with
int64 labels, plus the per-channel statistics and augmentation the search uses.

Datasets:

* ``digits`` (default, offline): scikit-learn's 1,797 handwritten digits (8x8 grayscale,
  values 0..16, shipped inside the scikit-learn package), rescaled to 0..255 and bilinearly
  upsampled to 16x16 so the three stages of the search network see 16, 8 and 4 pixels.
  No flips (a mirrored digit is another symbol), crop padding 2.
* ``cifar10`` / ``cifar100``: torchvision's loaders over ``DATA_DIR/cifar-10-batches-py`` /
  ``DATA_DIR/cifar-100-python`` (``--download`` fetches them). Flip + pad-4 crop.
* ``imagenet16-120``: the down-sampled ImageNet 16x16 pickle batches
  ``train_data_batch_1`` .. ``train_data_batch_10`` (each a dict with ``data`` ``[n, 768]``
  uint8 in channel-major order and 1-based ``labels``) in ``DATA_DIR`` or
  ``DATA_DIR/ImageNet16``; the 120-class subset keeps labels ``<= 120`` (then 0-based).
  Flip + pad-2 crop, as in NAS-Bench-201.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError


class DataError(UsageError):
    """A dataset could not be loaded; the message says what was expected where and which flag fixes it."""


@dataclass
class ImageData:
    """A dataset's training set in memory, with what the search needs to augment it."""

    name: str
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    num_classes: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    crop_padding: int
    flip: bool

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, n: int | None) -> ImageData:
        """The first ``n`` images (all when None): tiny searches for tests and demos."""
        if n is None or n >= len(self.labels):
            return self
        return ImageData(self.name, self.images[:n], self.labels[:n], self.num_classes, self.mean,
                         self.std, self.crop_padding, self.flip)


def _digits_array() -> np.ndarray:
    """The digits table ``[1797, 65]`` (64 pixels 0..16, then the label). Read straight from the
    file scikit-learn ships, locating the package without importing it (the import takes
    seconds); falls back to ``sklearn.datasets.load_digits``."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return np.loadtxt(path, delimiter=",", dtype=np.float32)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.concatenate([bunch.data, bunch.target[:, None]], axis=1).astype(np.float32)


def _digits(data_dir: str | None, download: bool) -> ImageData:
    table = _digits_array()
    x = torch.from_numpy(table[:, :64].reshape(-1, 1, 8, 8) * (255.0 / 16.0))
    x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(table[:, 64].astype(np.int64))
    scaled = images.float() / 255.0
    return ImageData("digits", images, labels, 10, (float(scaled.mean()),), (float(scaled.std()),), 2, False)


_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", "cifar-100-python", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _cifar(name: str, data_dir: str | None, download: bool) -> ImageData:
    import torchvision

    cls_name, folder, classes, mean, std = _CIFAR[name]
    root = data_dir or "data"
    source = getattr(torchvision.datasets, cls_name)
    try:
        ds = source(root, train=True, download=download)
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.int64)
    except Exception as exc:  # torchvision raises RuntimeError; a damaged pickle anything
        hint = (
            f"the download failed; check the network connection, or fetch {source.url} by hand and unpack it "
            f"into {os.path.abspath(root)}"
            if download
            else "pass --download to fetch it, or --data-dir to point at the folder that contains it"
        )
        raise DataError(
            f"{name}: training set not found or corrupted: expected the python version of the dataset "
            f"in {os.path.join(os.path.abspath(root), folder)} ({type(exc).__name__}: {exc}); {hint}."
        ) from None
    if images.shape[1:] != (3, 32, 32) or len(labels) != len(images):
        raise DataError(f"{name}: unexpected training data of shape {tuple(images.shape)} in {root}")
    return ImageData(name, images, labels, classes, mean, std, 4, True)


_IMAGENET16_BATCHES = [f"train_data_batch_{i}" for i in range(1, 11)]


def read_imagenet16_batch(path: str, classes: int, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """One ImageNet16 pickle batch (a dict with ``data`` ``[n, 768]`` uint8, channel-major, and
    1-based ``labels``), restricted to labels ``<= classes`` and made 0-based.

    Raises :class:`DataError` naming the file and ending with ``fix`` (how to repair it)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)
        labels = np.asarray(entry["labels"], dtype=np.int64)
        if len(data) != len(labels):
            raise ValueError(f"{len(data)} images but {len(labels)} labels")
    except Exception as exc:
        raise DataError(
            f"imagenet16-120: corrupt batch {os.path.abspath(path)} ({type(exc).__name__}: {exc}); expected "
            f"a pickled dict with 'data' [n, 768] uint8 and 1-based 'labels'. Replace the file; {fix}."
        ) from None
    keep = (labels >= 1) & (labels <= classes)
    return data[keep], labels[keep] - 1


def _imagenet16(data_dir: str | None, download: bool, classes: int = 120) -> ImageData:
    root = data_dir or "data"
    candidates = [root, os.path.join(root, "ImageNet16")]
    folder = next(
        (c for c in candidates if all(os.path.isfile(os.path.join(c, f)) for f in _IMAGENET16_BATCHES)), None
    )
    fix = (
        "ImageNet16-120 cannot be downloaded automatically: get the 16x16 down-sampled ImageNet "
        "(Imagenet16_train.tar.gz, from the ImageNet website's down-sampled images) and pass "
        "--data-dir to the folder holding its pickle batches"
    )
    if folder is None:
        where = " or ".join(os.path.abspath(c) for c in candidates)
        raise DataError(
            f"imagenet16-120: training batches not found: expected files {_IMAGENET16_BATCHES[0]} .. "
            f"{_IMAGENET16_BATCHES[-1]} in {where}. {fix}."
        )
    data, labels = [], []
    for fname in _IMAGENET16_BATCHES:
        d, y = read_imagenet16_batch(os.path.join(folder, fname), classes, fix)
        data.append(d)
        labels.append(y)
    images = torch.from_numpy(np.concatenate(data))
    return ImageData(
        f"imagenet16-{classes}",
        images,
        torch.from_numpy(np.concatenate(labels)),
        classes,
        (122.68 / 255, 116.66 / 255, 104.01 / 255),
        (63.22 / 255, 61.26 / 255, 65.09 / 255),
        2,
        True,
    )


#: ``--dataset`` names
DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagenet16-120")


def load_dataset(name: str, data_dir: str | None = None, download: bool = False) -> ImageData:
    """The training set of dataset ``name`` (one of :data:`DATASETS`).

    Raises:
        DataError: missing or corrupt data (message names the expected files and the fixing flag).
        ValueError: unknown dataset name.
    """
    if name == "digits":
        return _digits(data_dir, download)
    if name in _CIFAR:
        return _cifar(name, data_dir, download)
    if name == "imagenet16-120":
        return _imagenet16(data_dir, download)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
