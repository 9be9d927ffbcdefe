"""Regularisers of the DARTS family.

* beta-DARTS' beta-decay: a loss term added to the validation loss, so that every gradient
  evaluation of an update (including A2M's perturbed ones) sees it;
* lambda-DARTS' correction of the weight gradient (:func:`lambda_correction`).

beta-DARTS (Ye et al. 2022), the beta-decay regulariser::

    L_beta(alpha) = mean over edges e of logsumexp_o(alpha[e, o])

per cell type, weighted by ``lambda(epoch)`` that rises linearly from 0: the original uses
``lambda = 50 * epoch / 100`` (``epoch / 2``). On the DARTS space the normal and reduction
alphas get separate weights (A2M paper appendix C.5): ``w_n L_beta(alpha_n) + w_r L_beta(alpha_r)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .distributed import GradReduce, reduce_with, reducer


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


def _cell_direction(grads: Sequence[torch.Tensor], corr: str) -> list[torch.Tensor]:
    """lambda-DARTS' ascent direction ``d_l`` of the inter-cell gradient correlation, per cell
    (Lambda-DARTS ``sota/cnn/model_search.py`` ``get_perturbations``); ``grads`` flattened."""
    count = len(grads)
    weight = 1.0 / (count * (count - 1) / 2)
    if corr == "corr":
        norms = [g.norm().clamp_min(1e-30) for g in grads]
        units = [g / n for g, n in zip(grads, norms)]
        total = torch.stack(units).sum(0)
        # (I - u u^T) s / ||g||, without building the n x n projector
        return [weight * (total - u * torch.dot(u, total)) / n for u, n in zip(units, norms)]
    directions = []
    for i, g in enumerate(grads):
        d = torch.zeros_like(g)
        for j, other in enumerate(grads):
            if i == j:
                continue
            dot, abs_dot = torch.dot(g, other), torch.dot(g.abs(), other.abs()).clamp_min(1e-30)
            d = d + (1 - (dot / abs_dot) * g.sign() * other.sign()) * other / abs_dot
        directions.append(weight * d)
    return directions


def lambda_correction(
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    layer_weights: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    eps0: float = 1e-4,
    corr: str = "corr",
    layer_grads: Sequence[torch.Tensor] | None = None,
    process_group: Any = None,
    grad_reduce: GradReduce | None = None,
) -> list[torch.Tensor]:
    """lambda-DARTS' weight-gradient correction (Movahedi et al. 2023), to add as
    ``w.grad += lambda_t * correction`` before clipping and the weight optimizer's step.

    Each of the ``L`` cells has its own architecture weights ``A_l`` (``layer_weights``); with
    ``g_l = dL/dA_l`` (``layer_grads``, which the weight step's own backward gives; computed here
    when ``None``) the direction per cell is, for ``corr="corr"``::

        u_l = g_l / ||g_l||,  s = sum_k u_k,  d_l = c (I - u_l u_l^T) s / ||g_l||,  c = 1 / (L (L - 1) / 2)

    (the gradient of ``c sum_{i<j} cos(g_i, g_j)``; ``"signcorr"`` is the repository's sign
    variant, the gradient of ``c sum_{i<j} <g_i, g_j> / <|g_i|, |g_j|>``). With
    ``eps = eps0 / ||(d_1, ..., d_L)||`` and two more passes on the same batch::

        f = grad_w L(A - eps d),  b = grad_w L(A + eps d),  correction = (f - b) / (2 eps)

    which is ``-grad_w`` of the correlation: the weights then descend on ``L - lambda C``
    (Lambda-DARTS ``sota/cnn/train_search.py`` L243-247, ``get_reg_grads``).

    Args:
        loss_fn: ``loss_fn([A_1, ..., A_L]) -> scalar``, the weight step's loss at given per-cell weights.
        layer_weights: the ``A_l`` (any shapes); not changed.
        params: the weights ``w`` the correction is for; their ``.grad`` is not touched.
        eps0: the finite-difference radius over all cells (repository default 1e-4).
        corr: ``"corr"`` or ``"signcorr"``.
        layer_grads: ``dL/dA_l`` at ``layer_weights``, if already at hand (saves a pass).
        process_group, grad_reduce: data parallelism (:mod:`flatarch.distributed`; each rank's loss
            the mean over its shard): ``g_l`` (given local, or computed) and the correction are the
            means over the ranks, so the direction and the correction are the global batch's.

    Returns one tensor per param (zeros for a param the loss does not reach).
    """
    if corr not in ("corr", "signcorr"):
        raise ValueError(f"corr must be 'corr' or 'signcorr', got {corr!r}")
    if not (isinstance(eps0, (int, float)) and 0 < eps0 < float("inf")):
        raise ValueError(f"eps0 must be a finite number > 0, got {eps0!r}")
    weights = [w.detach() for w in layer_weights]
    if len(weights) < 2:
        raise ValueError(f"lambda_correction needs at least 2 cells' weights, got {len(weights)}")
    params = list(params)
    reduce = reducer(process_group, grad_reduce)
    if layer_grads is None:
        leaves = [w.clone().requires_grad_(True) for w in weights]
        layer_grads = torch.autograd.grad(loss_fn(leaves), leaves)
    grads = [g.reshape(-1) for g in reduce_with(reduce, [g.detach() for g in layer_grads])]
    directions = [d.reshape(w.shape) for d, w in zip(_cell_direction(grads, corr), weights)]
    scale = torch.cat([d.reshape(-1) for d in directions]).norm()
    # The repository divides by ``norm().item()`` (sota/cnn/model_search.py L266), a wait for the
    # device in every weight step; here eps stays on the device, divided in float64 as a Python
    # float would be. All-zero directions (scale 0, where the repository divides by zero) give a
    # zero correction, decided on the device too.
    moved = scale > 0
    eps = (eps0 / torch.where(moved, scale, 1.0).double()).to(scale.dtype)

    def grad_at(sign: float) -> tuple[torch.Tensor, ...]:
        loss = loss_fn([w + sign * eps * d for w, d in zip(weights, directions)])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, params))

    forward, backward = grad_at(-1.0), grad_at(1.0)
    return list(reduce_with(reduce, [torch.where(moved, (f - b) / (2 * eps), 0.0) for f, b in zip(forward, backward)]))
