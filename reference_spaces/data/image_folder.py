"""ImageNet-scale search data: an ImageFolder tree, decoded batch by batch by worker processes.

``--dataset imagenet --data-dir DIR`` reads ``DIR/train/<class>/<image>`` (the layout of
torchvision's ``ImageFolder``, one folder per class), too much to hold in memory as the other
datasets are (:mod:`.datasets`). The search protocol is PC-DARTS' ImageNet search
(yuhuixu1993/PC-DARTS ``train_search_imagenet.py`` and README):

* from each class a random 10% of the images train the weights and another 2.5% the architecture
  (README L47 and L82, the comment at ``train_search_imagenet.py`` L63); drawn once with a fixed
  seed, so every search seed sees the same subset, as their sampled copy of the data;
* both halves are augmented by ``RandomResizedCrop(224)`` and a horizontal flip, then normalised
  by ImageNet's mean and std (L89-L105); without augmentation (``--no-val-augment``) an image is
  resized to ``256/224`` of the crop and centre-cropped (their ``valid_data``, L106-L111);
* ``--image-size`` changes the crop (224 by default).

The batches keep the guarantees of :class:`~.batches.BatchStream`: the order of epoch ``e`` is a
permutation drawn from ``(seed, stream, e)``, each image's crop and flip from ``(seed, stream, e,
image)``, so a search resumes at an epoch boundary without saved state and the images do not
depend on the number of loader processes; with data parallelism every rank draws the same global
batches and loads only its slice of each (``shard``), so the ranks together load exactly the
one-device batches (``DistributedSampler``'s partition, applied batch by batch to the global plan).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .batches import batch_count, shard_of, shuffled_batches, stream_seed
from .datasets import DataError

#: PC-DARTS' ImageNet subsets: per class, the fraction for the weights and for the architecture
SPLIT_FRACTIONS = (0.10, 0.025)
#: the training crop (``RandomResizedCrop(224)``, L95) and ImageNet's normalisation (L89-L90)
IMAGE_SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: loader processes per rank (PC-DARTS ``--workers`` default, L24)
LOADER_WORKERS = 4
SPLIT_SEED = 0


@dataclass(frozen=True)
class FolderData:
    """The images of an ImageFolder tree (paths and labels, nothing decoded)."""

    name: str
    samples: tuple[tuple[str, int], ...]
    classes: tuple[str, ...]
    in_channels: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, fractions: Sequence[float] = SPLIT_FRACTIONS) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class, a seeded random ``fractions[0]`` of its images for the weights and another
        ``fractions[1]`` for the architecture (at least one each)."""
        labels = torch.tensor([label for _, label in self.samples])
        g = torch.Generator().manual_seed(SPLIT_SEED)
        weights, arch = [], []
        for c in range(self.num_classes):
            members = torch.nonzero(labels == c).flatten()
            members = members[torch.randperm(len(members), generator=g)]
            n_w, n_a = (max(1, round(f * len(members))) for f in fractions)
            weights.append(members[:n_w])
            arch.append(members[n_w:n_w + n_a])
        return torch.cat(weights).sort().values, torch.cat(arch).sort().values


def load_image_folder(data_dir: str | None) -> FolderData:
    """``DATA_DIR/train`` as an ImageFolder (:class:`DataError` naming what is missing)."""
    from torchvision.datasets import ImageFolder

    root = os.path.join(data_dir or "data", "train")
    try:
        found = ImageFolder(root)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagenet: no images in {os.path.abspath(root)} ({exc}); --data-dir must hold train/ with "
                        "one folder of images per class (the ImageNet training set as ImageFolder reads it)") from None
    if len(found.classes) < 2:
        raise DataError(f"imagenet: {os.path.abspath(root)} has {len(found.classes)} class folder(s); a search needs "
                        "at least 2")
    return FolderData("imagenet", tuple(found.samples), tuple(found.classes))


class FolderImages(torch.utils.data.Dataset):
    """``dataset[(index, epoch, purpose)]``: image ``index`` as a normalised float tensor and its label,
    augmented with draws seeded by ``(seed, stream, epoch, purpose, index)``."""

    def __init__(self, data: FolderData, size: int, augment: bool, seed: int, stream_id: int):
        from torchvision import transforms

        self.samples = data.samples
        self.size = size
        self.seed, self.stream_id = seed, stream_id
        self.augment = augment
        if augment:
            first = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
        else:
            first = [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)]
        self.transform = transforms.Compose([*first, transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        index, epoch, purpose = key
        path, label = self.samples[index]
        image = default_loader(path)
        if not self.augment:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # torchvision's transforms draw from the global generator
            torch.manual_seed((stream_seed(self.seed, self.stream_id, epoch, purpose) + 1_000_003 * index) % 2**63)
            return self.transform(image), label


class _Plan:
    """The batch sampler of a :class:`LoaderStream`: the rank's non-empty slices of the batches planned last."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int, int]]] = []

    def __iter__(self):
        return iter([b for b in self.batches if b])

    def __len__(self) -> int:
        return sum(1 for b in self.batches if b)


class LoaderStream:
    """Shuffled batches of ``images[indices]`` read by ``workers`` processes: the interface of
    :class:`~.batches.BatchStream` (``len``, ``epoch(e)``, ``sweep(e)``) for data too big for memory.

    Args:
        images: the dataset (:class:`FolderImages`).
        indices: which images this stream draws from.
        batch_size: the global batch; an epoch has ``max(1, len(indices) // batch_size)`` batches.
        seed, stream_id: what the epoch plans are seeded from.
        device, dtype: where and as what batches are produced.
        shard: ``(rank, world)``: this rank's slice of every batch (``tensor_split``).
        workers: loader processes (0: this process).
    """

    def __init__(self, images: FolderImages, indices: torch.Tensor, batch_size: int, seed: int, stream_id: int,
                 device: torch.device, shard: tuple[int, int] = (0, 1), dtype: torch.dtype = torch.float32,
                 workers: int = LOADER_WORKERS):
        if len(indices) == 0:
            raise ValueError("a batch stream needs at least one image")
        self.indices = indices
        self.batch_size = min(batch_size, len(indices))
        self.seed, self.stream_id = seed, stream_id
        self.device, self.dtype = torch.device(device), dtype
        self.shard = shard
        self.plan = _Plan()
        # workers start for each pass over the split (forked: milliseconds beside an ImageNet epoch);
        # persistent ones took seconds each to stop when the search ended
        self.loader = torch.utils.data.DataLoader(images, batch_sampler=self.plan, num_workers=workers,
                                                  pin_memory=self.device.type == "cuda")
        self.size = images.size

    def __len__(self) -> int:
        return batch_count(len(self.indices), self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(stream_seed(self.seed, self.stream_id, epoch, 0))
        yield from self._batches(shuffled_batches(len(self.indices), self.batch_size, g), epoch, 0)

    def sweep(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order, the last batch partial (the stream's augmentation, drawn for ``epoch``)."""
        yield from self._batches(list(torch.arange(len(self.indices)).split(self.batch_size)), epoch, 1)

    def _batches(self, batches: list[torch.Tensor], epoch: int, purpose: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        own = [shard_of(b, self.shard) for b in batches]
        self.plan.batches = [[(i, epoch, purpose) for i in self.indices[b].tolist()] for b in own]
        loaded = iter(self.loader)
        for b in own:
            if len(b) == 0:  # a last batch smaller than the ranks: this rank's slice is empty
                yield (torch.empty(0, 3, self.size, self.size, device=self.device, dtype=self.dtype),
                       torch.empty(0, dtype=torch.long, device=self.device))
                continue
            x, y = next(loaded)
            yield x.to(self.device, self.dtype, non_blocking=True), y.to(self.device, non_blocking=True)
