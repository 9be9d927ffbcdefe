"""The common part of SAM, USAM and A2M: a perturbed point ``alpha + e(g(alpha))``.

Each of them evaluates ``g0 = g(alpha)``, moves to ``alpha_t = alpha + e(g0)`` and evaluates
``g1 = g(alpha_t)``. They differ in ``e`` (normalised or not) and in what they add to ``g1``:

* ``hessian="none"`` (SAM, USAM as published): ``G = g1``; the Jacobian of the perturbation is
  dropped.
* ``hessian="exact"``: ``G`` is the true gradient of the perturbed objective
  ``L(alpha + e(g(alpha)))``, by automatic differentiation::

      G = g1 + J_e(alpha)^T g1          # J_e^T g1 = vjp of e(g(alpha)) with g1
                                        # USAM/A2M: = rho * H(alpha) g1 (T^2 H g1 when adaptive)

  It costs the two evaluations plus one double backward, and has no ``eps``. The ``e`` here
  is built from ``g0`` with its graph (``create_graph=True``).
* A2M's ``hessian="fd"`` (see :mod:`flatarch.a2m`).
"""

from __future__ import annotations

from typing import Any

import torch

from . import defaults, tree
from .base import ArchUpdate, check_choice, check_rho
from .evaluation import GradientOracle
from .perturbation import perturbation, scaling
from .step_info import StepInfo


class PerturbedUpdate(ArchUpdate):
    """Base of the SAM family. See :class:`flatarch.base.ArchUpdate` for the common arguments.

    Args:
        rho: perturbation radius (``>= 0``; 0 gives first-order DARTS).
        hessian: how the perturbation's Jacobian enters ``G`` (``"none"``, ``"exact"``; A2M adds ``"fd"``).
        adaptive: ASAM-style elementwise scaling ``T = |alpha| + adaptive_eta``.
    """

    #: True for SAM (``e = rho g / ||g||``)
    normalize = False
    hessian_modes: tuple[str, ...] = ("none", "exact")

    def __init__(
        self,
        params: Any,
        *,
        rho: float = defaults.RHO,
        hessian: str = "none",
        adaptive: bool = False,
        adaptive_eta: float = 1e-2,
        **kwargs: Any,
    ):
        self.rho = check_rho(rho)
        self.hessian = check_choice("hessian", hessian, self.hessian_modes)
        self.adaptive = bool(adaptive)
        self.adaptive_eta = float(adaptive_eta)
        if self.adaptive and not self.adaptive_eta >= 0:
            raise ValueError(f"adaptive_eta must be >= 0, got {adaptive_eta!r}")
        super().__init__(params, **kwargs)

    def hyperparameters(self) -> dict[str, Any]:
        hp: dict[str, Any] = {"rho": self.rho, "hessian": self.hessian}
        if self.adaptive:
            hp.update(adaptive=True, adaptive_eta=self.adaptive_eta)
        return hp

    def _scale(self, oracle: GradientOracle):
        return scaling(oracle.alpha, self.adaptive, self.adaptive_eta)

    def _perturb(self, grads, scale):
        return perturbation(grads, self.rho, normalize=self.normalize, scale=scale)

    def _direction(self, oracle: GradientOracle) -> tuple[tuple[torch.Tensor, ...], StepInfo]:
        if self.hessian == "exact":
            return self._exact_direction(oracle)
        return self._plain_direction(oracle)

    def _plain_direction(self, oracle: GradientOracle):
        scale = self._scale(oracle)
        loss0, g0, _ = oracle.evaluate(oracle.alpha, "alpha")
        alpha_t = tree.axpy(1.0, self._perturb(g0, scale), oracle.alpha)
        loss1, g1, _ = oracle.evaluate(alpha_t, "the perturbed point alpha + e")
        return g1, StepInfo(loss0, loss1, tree.global_norm(g0), oracle.evaluations)

    def _exact_direction(self, oracle: GradientOracle):
        scale = self._scale(oracle)
        if oracle.convention == "functional":
            loss0, g0, inputs = oracle.evaluate(oracle.alpha, "alpha", create_graph=True)
            e = self._perturb(g0, scale)
            alpha_t = tree.axpy(1.0, tuple(x.detach() for x in e), oracle.alpha)
            loss1, g1, _ = oracle.evaluate(alpha_t, "the perturbed point alpha + e")
        else:
            # Closure: writing alpha_t into the live tensors would invalidate a graph built
            # before it, so the graph of g(alpha) is rebuilt after the perturbed evaluation.
            loss0, g0, _ = oracle.evaluate(oracle.alpha, "alpha")
            alpha_t = tree.axpy(1.0, self._perturb(g0, scale), oracle.alpha)
            loss1, g1, _ = oracle.evaluate(alpha_t, "the perturbed point alpha + e")
            _, g0_graph, inputs = oracle.evaluate(oracle.alpha, "alpha (graph for the exact Jacobian)",
                                                  create_graph=True)
            e = self._perturb(g0_graph, scale)
        # vjp of e(g(alpha)) with g1. Parts of e that do not depend on alpha (a loss linear in
        # some leaf, a zero gradient) have a zero Jacobian and no graph: leave them out.
        linked = [(x, g.to(x.dtype)) for x, g in zip(e, g1) if x.requires_grad]
        jacobian_term: tuple = (None,) * len(inputs)
        if linked:
            jacobian_term = torch.autograd.grad(
                [x for x, _ in linked], inputs, grad_outputs=[g for _, g in linked], allow_unused=True
            )
        # the Jacobian of the local gradient: its products are reduced like the gradients
        jacobian_term = oracle.mean_across_ranks(
            [torch.zeros_like(g) if j is None else j.detach() for g, j in zip(g1, jacobian_term)])
        direction = tuple(g.detach() + j for g, j in zip(g1, jacobian_term))
        grad_norm = tree.global_norm(g0)
        return direction, StepInfo(loss0, loss1, grad_norm, oracle.evaluations)
