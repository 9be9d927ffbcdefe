"""SAM on the architecture parameters (Foret et al. 2021).

``G = g(alpha + rho * g(alpha) / ||g(alpha)||)``; two gradient evaluations. A zero gradient
gives a zero perturbation (the norm is clamped), never a division by zero.
"""

from __future__ import annotations

from .perturbed import PerturbedUpdate


class SAM(PerturbedUpdate):
    """Sharpness-aware minimisation with a normalised perturbation.

    Args (beyond :class:`flatarch.base.ArchUpdate`'s):
        rho: radius of the perturbation ``e = rho * g / ||g||``.
        hessian: ``"none"`` (published SAM, ``G = g1``) or ``"exact"`` (the full gradient of
            ``L(alpha + e(g(alpha)))``, including the Jacobian of the normalised perturbation).
        adaptive: ASAM: ``e = rho * T^2 g / ||T g||`` with ``T = |alpha| + adaptive_eta``.
    """

    name = "sam"
    normalize = True
