"""How decided a search's cell is: figures of the op distributions ``p_e = softmax(alpha_e)`` of
every edge ``e`` (all groups: NAS-Bench-201's cell, the DARTS space's normal and reduction cells).

* ``alpha_entropy = mean_e H(p_e)``, ``H(p) = -sum_o p_o log p_o`` (nats): ``log(ops)`` while
  every edge is uniform (1.609 with 5 ops), 0 once every edge is one-hot.
* ``alpha_margin = min_e (p_e[top 1] - p_e[top 2])``: the lead of the chosen op over the runner-up
  on the edge closest to switching its choice.
* ``decided_edges``: the edges whose margin exceeds :data:`NOISE_RATIO` times the *noise margin*,
  the largest top-1/top-2 margin of the initial alphas (random, ``1e-3 * N(0, 1)`` in both spaces:
  about 2e-4 to 4e-4 on NAS-Bench-201). An edge whose lead is that small is chosen by the random
  start and the first batches, not by the search.
* **undecided**: no edge is decided: the cell is within noise of its initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: a cell is undecided while its smallest margin is at most this many times the initial alphas' largest
NOISE_RATIO = 10.0


def _distributions(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Every edge's op distribution, all groups stacked: ``[edges, ops]`` (float64)."""
    return torch.cat([torch.softmax(a.detach().double().reshape(-1, a.shape[-1]), dim=-1) for a in alphas.values()])


def margins(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per edge, the top-1 probability minus the top-2 one."""
    return _leads(_distributions(alphas))


def _leads(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def figures(alphas: Mapping[str, torch.Tensor], noise: float = 0.0) -> dict[str, float | int]:
    """``{"alpha_entropy", "alpha_margin", "decided_edges", "edges"}`` of the op-choice alphas by
    group; ``noise``: the initial alphas' :func:`noise_margin`."""
    p = _distributions(alphas)
    entropy = -(p * p.clamp_min(1e-300).log()).sum(-1)
    lead = _leads(p)
    return {"alpha_entropy": float(entropy.mean()), "alpha_margin": float(lead.min()),
            "decided_edges": int((lead > NOISE_RATIO * noise).sum()), "edges": len(lead)}


def noise_margin(initial: Mapping[str, torch.Tensor]) -> float:
    """The largest top-1/top-2 margin of the initial alphas: what randomness alone gives."""
    return float(margins(initial).max())
