"""The perturbation ``e(g)`` that SAM-family updates add to alpha.

===============  ======================================  ============================
kind             ``e``                                   used by
===============  ======================================  ============================
unnormalised     ``rho * g``                             USAM, A2M
normalised       ``rho * g / ||g||``                     SAM
adaptive (ASAM)  ``T`` scales it: ``T = |alpha| + eta``  the ``adaptive=True`` flag
===============  ======================================  ============================

Adaptive forms (Kwon et al. 2021, elementwise ``T``): normalised ``rho * T^2 g / ||T g||``,
unnormalised ``rho * T^2 g``. ``T`` is held constant (detached), as ASAM does, so the exact
modes differentiate through ``g`` only.

Every function here is differentiable in ``g`` (the exact modes take its vector-Jacobian
product) and safe at ``g = 0``: the norm is clamped, so a zero gradient gives a zero
perturbation instead of a division by zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_TINY = 1e-12


def scaling(alpha: Sequence[torch.Tensor], adaptive: bool, eta: float) -> tuple[torch.Tensor, ...] | None:
    """``T = |alpha| + eta`` per leaf (detached), or ``None`` when not adaptive."""
    if not adaptive:
        return None
    return tuple(a.detach().abs() + eta for a in alpha)


def perturbation(
    grads: Sequence[torch.Tensor],
    rho: float,
    *,
    normalize: bool,
    scale: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """``e(g)``: ``rho * T^2 g / ||T g||`` (normalised) or ``rho * T^2 g`` (``T = 1`` when ``scale`` is None)."""
    if scale is None:
        scaled = tuple(grads)
        squared_scaled = scaled
    else:
        scaled = tuple(t * g for t, g in zip(scale, grads))
        squared_scaled = tuple(t * s for t, s in zip(scale, scaled))
    if not normalize:
        return tuple(rho * s for s in squared_scaled)
    # sqrt of a clamped sum: finite value *and* finite derivative at g = 0
    sum_sq = torch.stack([s.to(torch.promote_types(s.dtype, torch.float32)).pow(2).sum() for s in scaled]).sum()
    norm = sum_sq.clamp_min(_TINY**2).sqrt()
    return tuple((rho / norm).to(s.dtype) * s for s in squared_scaled)


def direction_scale(vector: Sequence[torch.Tensor], scale: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    """``T^2 v``: the direction along which A2M differentiates ``g`` (``v`` when not adaptive)."""
    if scale is None:
        return tuple(vector)
    return tuple(t * t * v for t, v in zip(scale, vector))
