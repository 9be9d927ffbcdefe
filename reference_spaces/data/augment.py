"""Data augmentation of a whole batch at once, on whatever device the batch is on.

The random numbers are drawn beforehand (on a CPU generator, so CPU and GPU runs see the same
ones) and passed in; each function then costs a few kernels for the batch, however many images:

* :func:`random_crop`: pad ``pad`` zero pixels on every side, cut the ``H x W`` window at
  ``offsets`` (torchvision's ``RandomCrop(size, padding=pad)``, which also pads with zeros);
* :func:`horizontal_flip`: mirror the images where ``flips`` is true (``RandomHorizontalFlip``);
* :func:`cutout`: zero a ``length x length`` square centred at ``centres``, clipped at the border
  (DeVries & Taylor 2017; DARTS ``utils.py`` ``Cutout``), applied after normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def draw_crop_offsets(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 2]`` row and column offsets into the padded image, uniform in ``0 .. 2 pad``."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)


def draw_flips(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` booleans, each true with probability 1/2."""
    return torch.rand(n, generator=generator) < 0.5


def draw_cutout_centres(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 2]`` centre rows (uniform in ``0 .. H-1``) and columns (``0 .. W-1``)."""
    return torch.stack([torch.randint(0, height, (n,), generator=generator),
                        torch.randint(0, width, (n,), generator=generator)], dim=1)


def random_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """``x`` ``[n, C, H, W]`` zero-padded by ``pad``, each image cut at its ``offsets`` row/column."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (offsets[:, 0:1] + torch.arange(h, device=x.device))[:, :, None]  # [n, h, 1]
    cols = (offsets[:, 1:2] + torch.arange(w, device=x.device))[:, None, :]  # [n, 1, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def horizontal_flip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """``x`` with the images where ``flips`` is true mirrored left to right."""
    return torch.where(flips[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, centres: torch.Tensor, length: int) -> torch.Tensor:
    """``x`` with pixels ``cy - length//2 <= row < cy + length//2`` (and likewise columns) zeroed,
    clipped at the border, as DARTS' ``Cutout`` (an odd ``length`` zeroes ``length - 1`` pixels)."""
    if length == 0:
        return x
    h, w = x.shape[-2:]
    half = length // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    cy, cx = centres[:, 0:1], centres[:, 1:2]
    in_rows = (rows >= cy - half) & (rows < cy + half)  # [n, h]
    in_cols = (cols >= cx - half) & (cols < cx + half)  # [n, w]
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return x.masked_fill(hole, 0.0)


def draw_plan(batches: Sequence[torch.Tensor], generator: torch.Generator, *, pad: int, flip: bool,
              cutout_length: int, height: int, width: int) -> torch.Tensor:
    """``[n, 6]`` int64 on the host, one row per image of ``batches`` (index lists): its index, crop
    offsets (row, column), flip flag and cutout centre (row, column). Drawn batch by batch, crop then
    flip then cutout, each only where in use (zeros otherwise), so that the draws of one setting do
    not depend on the others; a whole epoch's plan reaches the device in one copy."""
    rows = []
    for idx in batches:
        n = len(idx)
        zeros = torch.zeros(n, 2, dtype=torch.long)
        offsets = draw_crop_offsets(n, pad, generator) if pad else zeros
        flips = draw_flips(n, generator).long() if flip else zeros[:, 0]
        centres = draw_cutout_centres(n, height, width, generator) if cutout_length else zeros
        rows.append(torch.cat([idx[:, None], offsets, flips[:, None], centres], dim=1))
    return torch.cat(rows)


def apply_plan(images: torch.Tensor, rows: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, pad: int,
               flip: bool, cutout_length: int) -> torch.Tensor:
    """The batch of ``rows`` of a :func:`draw_plan` from uint8 ``images``: scaled to ``[0, 1]``, cropped,
    flipped, normalised, then cut out (each where in use), on the device ``images`` and ``rows`` are on, in the
    dtype of ``mean``."""
    x = images[rows[:, 0]].to(mean.dtype).div_(255.0)
    if pad:
        x = random_crop(x, rows[:, 1:3], pad)
    if flip:
        x = horizontal_flip(x, rows[:, 3].bool())
    x = (x - mean) / std
    if cutout_length:
        x = cutout(x, rows[:, 4:6], cutout_length)
    return x.contiguous()
