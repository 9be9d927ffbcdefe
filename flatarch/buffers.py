"""Copies of a module's buffers (BatchNorm running statistics), taken and put back cheaply.

An update with several evaluations keeps the buffers as the first pass left them (see
:mod:`flatarch.evaluation`): it copies them after that pass and writes them back at the end,
and copies them before the step too, to put them back if the step fails. A DARTS search network
has thousands of small buffers (about 2,800 in the original 8-cell network), so copying them one
tensor at a time costs thousands of kernel launches per step on a GPU. Here the copies go into
storage that lives as long as the update and is reused while the module's buffers stay the same
tensors, with one multi-tensor copy (``torch._foreach_copy_``) per device and dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


def module_buffers(module: nn.Module) -> list[torch.Tensor]:
    """Every buffer of ``module`` and its submodules, each tensor once (what ``module.buffers()``
    yields, without building the dotted names, which costs more than the walk itself)."""
    seen_modules: set[int] = set()
    seen: set[int] = set()
    found: list[torch.Tensor] = []
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen_modules:
            continue
        seen_modules.add(id(m))
        for buffer in m._buffers.values():
            if buffer is not None and id(buffer) not in seen:
                seen.add(id(buffer))
                found.append(buffer)
        stack.extend(child for child in reversed(m._modules.values()) if child is not None)
    return found


def _copy(destinations: Sequence[torch.Tensor], sources: Sequence[torch.Tensor],
          groups: Sequence[list[int]]) -> None:
    with torch.no_grad():
        for group in groups:
            torch._foreach_copy_([destinations[i] for i in group], [sources[i] for i in group])


class BufferSnapshot:
    """One copy of a list of buffers; :meth:`take` copies them in, :meth:`put_back` copies them out."""

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor] = []
        self._store: list[torch.Tensor] = []
        self._groups: list[list[int]] = []

    def _fits(self, buffers: Sequence[torch.Tensor]) -> bool:
        return len(buffers) == len(self._buffers) and all(
            b is old and b.shape == s.shape for b, old, s in zip(buffers, self._buffers, self._store)
        )

    def take(self, buffers: Sequence[torch.Tensor]) -> None:
        if not self._fits(buffers):
            self._buffers = list(buffers)
            self._store = [torch.empty_like(b, memory_format=torch.preserve_format) for b in buffers]
            keys: dict[tuple[torch.device, torch.dtype], list[int]] = {}
            for i, b in enumerate(buffers):
                keys.setdefault((b.device, b.dtype), []).append(i)
            self._groups = list(keys.values())
        _copy(self._store, self._buffers, self._groups)

    def put_back(self) -> None:
        """Write the copy back into the buffers it was taken from."""
        _copy(self._buffers, self._store, self._groups)


@contextlib.contextmanager
def frozen_running_statistics(module: nn.Module | None) -> Iterator[None]:
    """BatchNorm layers of ``module`` in training mode normalise by the batch as always but leave
    their running statistics alone (``track_running_stats`` off for the duration): a pass under
    ``torch.func.vmap`` cannot update unbatched buffers in place, and A2M's later passes must not
    change them anyway."""
    if module is None:
        yield
        return
    layers = [m for m in module.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True
