"""Unnormalised SAM on the architecture parameters (Andriushchenko & Flammarion 2022).

``G = g(alpha + rho * g(alpha))``; two gradient evaluations.
"""

from __future__ import annotations

from .perturbed import PerturbedUpdate


class USAM(PerturbedUpdate):
    """USAM: ``e = rho * g`` (``rho * T^2 g`` with ``adaptive=True``).

    ``hessian="exact"`` gives the full gradient of the USAM objective,
    ``(I + rho H(alpha)) g(alpha_t)`` -- the quantity A2M approximates.
    """

    name = "usam"
    normalize = False
