"""The candidate operations of the DARTS space and their building blocks.

Every op maps ``C`` channels to ``C`` channels; with ``stride=2`` it halves height and width.
``affine=False`` (search network) leaves BatchNorm without learnable scale and shift, as in the
original search, so the softmax weights alone scale each op's output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..blocks import Zero
from .genotype import PRIMITIVES


class DilConv(nn.Sequential):
    """ReLU -> depthwise Conv(k, dilation d) -> pointwise 1x1 Conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked separable convolutions (the first carries the stride), as in DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine=affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two 1x1 stride-2 convolutions, the second on
    the input shifted by one pixel, concatenated (``c_out`` must be even).

    With ``copies=m`` it is ``m`` independent FactorizedReduce of the same input in one call (the
    edges of a search cell that read one node): ``[N, m, c_out, H/2, W/2]``, copy ``k``'s kernels
    at rows ``k*c_out/2:(k+1)*c_out/2`` of both convolutions."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, copies: int = 1):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.copies = copies
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, copies * c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, copies * c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(copies * c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            # odd resolution: pad so that both halves have ceil(H/2) x ceil(W/2) pixels. (Only then:
            # on a channel slice of a channels-last tensor, pad + strided 1x1 conv crashes the CPU
            # backward of torch 2.14.)
            shifted = nn.functional.pad(x.contiguous(), (0, 1, 0, 1))[:, :, 1:, 1:]
        first, second = self.conv_1(x), self.conv_2(shifted)
        if self.copies == 1:
            return self.bn(torch.cat([first, second], dim=1))
        halves = torch.cat([first.unflatten(1, (self.copies, -1)), second.unflatten(1, (self.copies, -1))], dim=2)
        return self.bn(halves.flatten(1, 2)).unflatten(1, (self.copies, -1))


def _pool(kind: str) -> Callable[[int, int, bool], nn.Module]:
    def make(c: int, stride: int, affine: bool) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return make


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


#: the convolution ops: ``(separable, kernel, padding, dilation)`` (DARTS ``operations.py``)
CONVOLUTIONS: dict[str, tuple[bool, int, int, int]] = {
    "sep_conv_3x3": (True, 3, 1, 1),
    "sep_conv_5x5": (True, 5, 2, 1),
    "dil_conv_3x3": (False, 3, 2, 2),
    "dil_conv_5x5": (False, 5, 4, 2),
}


def _convolution(name: str) -> Callable[[int, int, bool], nn.Module]:
    separable, kernel, padding, dilation = CONVOLUTIONS[name]

    def make(c: int, stride: int, affine: bool) -> nn.Module:
        if separable:
            return SepConv(c, c, kernel, stride, padding, affine=affine)
        return DilConv(c, c, kernel, stride, padding, dilation, affine=affine)

    return make


#: op name -> constructor ``(C, stride, affine) -> nn.Module``; keys in :data:`PRIMITIVES` order.
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": _pool("max"),
    "avg_pool_3x3": _pool("avg"),
    "skip_connect": _skip,
    **{name: _convolution(name) for name in CONVOLUTIONS},
}
assert tuple(OPS) == PRIMITIVES


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples of a branch with probability ``p`` and scale survivors by ``1/(1-p)``
    (expected value unchanged)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask
