"""Loss terms added to the validation loss, so that every gradient evaluation of an update
(including A2M's perturbed ones) sees them.

beta-DARTS (Ye et al. 2022), the beta-decay regulariser::

    L_beta(alpha) = mean over edges e of logsumexp_o(alpha[e, o])

per cell type, weighted by ``lambda(epoch)`` that rises linearly from 0: the original uses
``lambda = 50 * epoch / 100`` (``epoch / 2``). On the DARTS space the normal and reduction
alphas get separate weights (A2M paper appendix C.5): ``w_n L_beta(alpha_n) + w_r L_beta(alpha_r)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def beta_decay(
    alphas: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    weights: Sequence[float] | Mapping[str, float] | None = None,
) -> torch.Tensor:
    """``sum_k weights[k] * mean(logsumexp(alphas[k], dim=-1))``; weights default to 1.

    ``alphas`` is one ``[edges, ops]`` tensor, a list of them or a dict by cell type
    (``{"normal": ..., "reduce": ...}``); ``weights`` matches its structure.
    """
    if isinstance(alphas, torch.Tensor):
        items = [("alpha", alphas)]
    elif isinstance(alphas, Mapping):
        items = list(alphas.items())
    else:
        items = list(enumerate(alphas))
    if not items:
        raise ValueError("beta_decay needs at least one alpha tensor")
    if weights is None:
        weight_of = dict.fromkeys((k for k, _ in items), 1.0)
    elif isinstance(weights, Mapping):
        missing = [k for k, _ in items if k not in weights]
        if missing:
            raise ValueError(f"beta_decay weights are missing cell types {missing}")
        weight_of = dict(weights)
    else:
        weights = list(weights)
        if len(weights) != len(items):
            raise ValueError(f"beta_decay got {len(weights)} weights for {len(items)} alpha tensors")
        weight_of = {k: w for (k, _), w in zip(items, weights)}
    terms = [weight_of[k] * torch.logsumexp(a, dim=-1).mean() for k, a in items]
    return torch.stack(terms).sum()


def beta_decay_weight(epoch: float, *, start: float = 0.0, end: float = 50.0, epochs: float = 100.0) -> float:
    """``lambda(epoch)``, linear from ``start`` at epoch 0 to ``end`` at ``epochs``.

    The default reproduces beta-DARTS' ``50 * epoch / 100 = epoch / 2`` (it keeps rising past
    ``epochs``, like the original formula).
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    return start + (end - start) * float(epoch) / epochs
