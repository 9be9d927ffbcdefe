"""Host tensors onto a device without waiting for it.

``tensor.to("cuda")`` from ordinary (pageable) host memory waits until every kernel queued on
the stream has finished before it copies, so a copy per training step (random numbers drawn on
a CPU generator for reproducibility, batch indices) costs a full synchronisation each time.
Copying from page-locked memory with ``non_blocking=True`` queues the copy behind that work and
returns at once; torch's host allocator keeps the page-locked block alive until the copy is done.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU-to-CUDA copy is queued without a host synchronisation."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
