"""Pytree helpers: architecture parameters may be a tensor, a list, a dict or any nesting.

flatarch flattens the pytree once (``torch.utils._pytree``, the same machinery as ``torch.func``)
and works on the tuple of leaves; every direction is unflattened back to the user's structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

Leaves = tuple[torch.Tensor, ...]


def flatten(tree: Any) -> tuple[list[Any], pytree.TreeSpec, list[str]]:
    """Leaves, spec and a readable path per leaf (``"['normal']"``, ``"[1]"``, ``"<root>"``)."""
    with_paths, spec = pytree.tree_flatten_with_path(tree)
    paths = [pytree.keystr(path) or "<root>" for path, _ in with_paths]
    return [leaf for _, leaf in with_paths], spec, paths


def unflatten(leaves: Sequence[Any], spec: pytree.TreeSpec) -> Any:
    return pytree.tree_unflatten(list(leaves), spec)


def global_norm(leaves: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm over all leaves together, accumulated in float32 or wider."""
    squares = [leaf.detach().to(torch.promote_types(leaf.dtype, torch.float32)).pow(2).sum() for leaf in leaves]
    return torch.stack([s.to(squares[0].device) for s in squares]).sum().sqrt()


def axpy(scale: float | torch.Tensor, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> Leaves:
    """``y + scale * x`` leaf by leaf."""
    return tuple(y + scale * x for x, y in zip(xs, ys))


def all_finite(leaves: Sequence[torch.Tensor]) -> torch.Tensor:
    """A 0-dim bool tensor (no host sync): whether every entry of every leaf is finite."""
    device = leaves[0].device
    if all(leaf.device == device for leaf in leaves):
        # one concatenation, one check: three kernels however many leaves (concatenating
        # promotes to the widest dtype, which keeps every value's finiteness)
        return torch.isfinite(torch.cat([leaf.detach().reshape(-1) for leaf in leaves])).all()
    flags = [torch.isfinite(leaf).all().to(device) for leaf in leaves]
    return torch.stack(flags).all()
