"""Building blocks both reference spaces use: ReLU-Conv-BN, the ``none`` op, PC-DARTS' partial
channels and channel shuffle, and mixing the candidate ops of several edges by their weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """``BN(Conv_k(ReLU(x)))`` without a conv bias (DARTS ``operations.py``; NAS-Bench-201's
    ``ReLUConvBN``). ``affine=False`` in search networks, so the mixing weights alone scale an op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output's shape (kept in the graph so its weight gets a gradient)."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (PC-DARTS, so that another ``1/K`` of the channels goes
    through the mixed ops next time). Channels are dimension -3: ``[N, C, H, W]``, or
    ``[N, edges, C, H, W]`` for the edges of :class:`~flatarch.reference_spaces.darts.search_ops.OutgoingEdges`."""
    return x.unflatten(-3, (groups, -1)).transpose(-4, -3).flatten(-4, -3)


def partial_channels(x: torch.Tensor, k: int, inner: Callable[[torch.Tensor], torch.Tensor],
                     bypass: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """PC-DARTS (Xu et al. 2020, ``model_search.py`` ``MixedOp``): ``inner`` on the first ``C/K``
    channels, the rest (through ``bypass``, e.g. a max-pool on reduction edges) concatenated after
    it, then a channel shuffle with ``K`` groups. When ``inner`` returns one output per edge
    (``[N, edges, C/K, H, W]``), every edge gets the same rest."""
    part = x.shape[1] // k
    # contiguous: channel slices of a channels-last tensor crash the CPU backward (torch 2.14)
    # (split: one backward that concatenates, where two slices would each zero-fill a copy of x)
    active, rest = (t.contiguous() for t in x.split([part, x.shape[1] - part], dim=1))
    if bypass is not None:
        rest = bypass(rest)
    out = inner(active)
    if out.dim() == rest.dim() + 1:
        rest = rest.unsqueeze(1).expand(-1, out.shape[1], -1, -1, -1)
    return channel_shuffle(torch.cat([out, rest], dim=-3), k)


# --- mixing the edges that read one node at once ---------------------------------------------------
# A search pass is thousands of small operator calls, and on a GPU each costs the host more than
# the device (docs/performance.md). So each space runs the candidate ops of all edges that read
# the same node together (grouped convolutions, shared parameter-free ops) and stacks their
# outputs; one batched matrix product then mixes every edge's ops by its weights.

def flat_weights(weights: torch.Tensor) -> torch.Tensor:
    """A cell's ``[edges, ops]`` mixing weights flattened, with a zero appended (index -1) for the
    outputs a row of :func:`mixing_index` does not read."""
    return torch.cat([weights.reshape(-1), weights.new_zeros(1)])


def mixing_index(edges: Sequence[int], ops: Sequence[str], shared: Sequence[str],
                 per_edge: Sequence[str]) -> torch.Tensor:
    """The ``[m, len(shared) + m * len(per_edge)]`` positions in :func:`flat_weights` that mix the
    stack ``[shared ops..., per_edge[0] of edges 0..m-1, per_edge[1] of edges 0..m-1, ...]`` into
    the outputs of the ``m`` given edges (rows of the cell's weights): row ``k`` reads edge ``k``'s
    weight of each shared output and of its own per-edge outputs, and the zero elsewhere. Ops in
    neither list (``none``) are left out: ``w * 0`` adds nothing to the value or to any gradient
    (``w_none`` still matters through the softmax that made the weights)."""
    rows = []
    for k, edge in enumerate(edges):
        own = edge * len(ops)
        row = [own + ops.index(name) for name in shared]
        for name in per_edge:
            row += [own + ops.index(name) if j == k else -1 for j in range(len(edges))]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def add_to_nodes(sums: dict[int, torch.Tensor], targets: Sequence[int], outputs: torch.Tensor) -> None:
    """Add each edge's output (``outputs[:, k]``, ``[N, m, ...]``) into the running sum of its target
    node ``targets[k]``. ``unbind``, not indexing: one call, and its backward stacks instead of
    zero-filling a full-size gradient per edge."""
    for target, term in zip(targets, outputs.unbind(1)):
        sums[target] = term if target not in sums else sums[target] + term


def mix_stack(stack: torch.Tensor, flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[n, k] = sum_s flat[index[k, s]] * stack[n, s]``: ``[N, S, ...]`` -> ``[N, m, ...]``."""
    mixing = flat[index].to(stack.dtype).expand(stack.shape[0], -1, -1)
    # bmm with the matrix expanded over the batch: fewer calls than matmul's broadcasting
    return torch.bmm(mixing, stack.flatten(2)).unflatten(2, stack.shape[2:])
