"""The cost of a network: parameters and FLOPs of one forward pass of one image.

``flops`` is what :class:`torch.utils.flop_counter.FlopCounterMode` counts (2 per multiply-add of
every convolution and matrix product); ``macs`` is half of it, the multiply-adds, which is the
unit NAS-Bench-201 and NATS-Bench call "FLOPs" (AutoDL-Projects ``xautodl/utils/flop_benchmark.py``
counts one per multiply-add of each Conv2d and Linear, pooling and BatchNorm left out).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def profile(model: nn.Module, input_shape: tuple[int, ...], parameters: int | None = None) -> dict[str, int]:
    """``{"params", "flops", "macs"}`` of ``model`` on one ``input_shape`` image (``[C, H, W]``), in
    eval mode and without gradients; ``parameters`` replaces the count of all of ``model``'s
    (e.g. without an auxiliary head)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    params = sum(p.numel() for p in model.parameters()) if parameters is None else parameters
    return {"params": int(params), "flops": flops, "macs": flops // 2}


def describe(figures: dict[str, int]) -> str:
    """``"1.07 M parameters, 153.3 M multiply-adds"``."""
    return f"{figures['params'] / 1e6:.3f} M parameters, {figures['macs'] / 1e6:.2f} M multiply-adds"
