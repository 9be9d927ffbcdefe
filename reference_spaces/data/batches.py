"""The search's data split and batch streams.

The whole training set lives on the search device as uint8; each batch is gathered,
augmented and normalised there (no worker processes, no per-image Python, and no host
synchronisation: an epoch's random numbers reach the device in one copy that does not wait
for it), so data loading costs next to nothing beside the network passes.

Determinism and resume: the order and augmentation of epoch ``e`` of a stream depend only on
``(seed, stream_id, e)`` through a CPU ``torch.Generator`` seeded from them; nothing has to be
saved to continue an interrupted search at an epoch boundary, and CPU and GPU runs see the
same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from flatarch.transfer import to_device

from . import augment
from .datasets import ImageData


def stream_seed(seed: int, stream_id: int, epoch: int, purpose: int) -> int:
    """The seed of a stream's random numbers in one epoch: distinct and reproducible per (seed, stream,
    epoch, purpose: batches 0, sweeps 1)."""
    return (seed * 1_000_003 + stream_id * 10_007 + epoch + purpose * 7_919_000) % (2**63)


def shard_of(rows: torch.Tensor, shard: tuple[int, int]) -> torch.Tensor:
    """Rank ``r``'s part of one batch's rows, ``shard = (r, world)``: the ``r``-th of ``world`` near-equal
    consecutive pieces (equal when the batch divides, as every training batch does)."""
    rank, world = shard
    return rows if world == 1 else rows.tensor_split(world)[rank]


def batch_count(n: int, batch_size: int) -> int:
    """Full batches of an epoch over ``n`` images (the rest is left out; at least one)."""
    return max(1, n // batch_size)


def shuffled_batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """An epoch's batches: positions ``0..n-1`` in the order ``g`` permutes them, cut into
    :func:`batch_count` batches."""
    order = torch.randperm(n, generator=g)
    return [order[b * batch_size : (b + 1) * batch_size] for b in range(batch_count(n, batch_size))]


def split_half(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DARTS' split: the first half of the training set for weights, the second for alphas."""
    half = n // 2
    return torch.arange(half), torch.arange(half, n)


class BatchStream:
    """Shuffled mini-batches of ``data[indices]``.

    Args:
        data: the dataset in memory.
        indices: which images this stream draws from.
        batch_size: images per batch; an epoch has ``max(1, len(indices) // batch_size)``
            batches (a last partial batch is dropped: BatchNorm statistics of a handful of images
            are noise, and equal batch shapes keep timings steady).
        augment: random crop with ``data.crop_padding`` zero padding and (where ``data.flip``)
            horizontal flips; normalisation by ``data.mean``/``data.std`` always.
        seed, stream_id: what the epoch generators are seeded from.
        device: where batches are produced.
        dtype: the floating-point type of the batches.
        shard: ``(rank, world)``: data parallelism. Every rank draws the same plan for the whole
            batches and produces only its ``rank``-th of ``world`` consecutive pieces of each
            (``tensor_split``: equal when the batch divides), so the ranks' shards together are the
            one-device batch, image for image, crop for crop.
    """

    def __init__(
        self,
        data: ImageData,
        indices: torch.Tensor,
        batch_size: int,
        augment: bool,
        seed: int,
        stream_id: int,
        device: torch.device | str = "cpu",
        shard: tuple[int, int] = (0, 1),
        dtype: torch.dtype = torch.float32,
    ):
        if len(indices) == 0:
            raise ValueError("a batch stream needs at least one image")
        self.device = torch.device(device)
        self.images = data.images[indices].to(self.device)
        self.labels = data.labels[indices].to(self.device)
        self.batch_size = min(batch_size, len(indices))
        self.augment = augment
        self.pad = data.crop_padding
        self.flip = data.flip
        self.seed = int(seed)
        self.stream_id = int(stream_id)
        self.shard = shard
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(data.mean, device=self.device, dtype=dtype).view(shape)
        self.std = torch.tensor(data.std, device=self.device, dtype=dtype).view(shape)

    def __len__(self) -> int:
        return batch_count(len(self.labels), self.batch_size)

    def _generator(self, epoch: int, purpose: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(stream_seed(self.seed, self.stream_id, epoch, purpose))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The shuffled batches of epoch ``epoch`` (0-based), always the same for the same arguments."""
        g = self._generator(epoch)
        yield from self._batches(shuffled_batches(len(self.labels), self.batch_size, g), g)

    def sweep(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order, the last batch partial: for measuring loss and accuracy on the
        whole split (with the stream's augmentation, drawn for ``epoch``)."""
        g = self._generator(epoch, purpose=1)
        order = torch.arange(len(self.labels))
        yield from self._batches(list(order.split(self.batch_size)), g)

    def _batches(self, batches: list[torch.Tensor], g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of these index lists. All of their random numbers are drawn first, batch by batch
        in the order a batch-at-a-time loop would draw them, and go to the device in one copy that does
        not wait for it (:func:`flatarch.transfer.to_device`): no host synchronisation per batch."""
        pad, flip = (self.pad, self.flip) if self.augment else (0, False)
        h, w = self.images.shape[-2:]
        plan = augment.draw_plan(batches, g, pad=pad, flip=flip, cutout_length=0, height=h, width=w)
        own = [shard_of(rows, self.shard) for rows in plan.split([len(idx) for idx in batches])]
        for rows in to_device(torch.cat(own), self.device).split([len(rows) for rows in own]):
            x = augment.apply_plan(self.images, rows, self.mean, self.std, pad=pad, flip=flip, cutout_length=0)
            yield x, self.labels[rows[:, 0]]
