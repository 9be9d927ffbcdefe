"""A2M, Architecture-Aware Minimization (paper Eq. 8).

With ``g(a) = grad_alpha L_val(w, a)``::

    g0      = g(alpha)
    alpha_t = alpha + rho * g0                            # USAM shift
    g1      = g(alpha_t)
    h       = (g(alpha_t + eps g1) - g(alpha_t - eps g1)) / (2 eps)   # ~ H(alpha_t) g1
    G       = g1 + rho * h

``G`` approximates the gradient of the USAM objective ``L(alpha + rho g(alpha))``, which is
exactly ``(I + rho H(alpha)) g(alpha_t)``: A2M takes the Hessian at ``alpha_t`` (an O(rho^2)
change) and a central difference for its product with ``g1`` (O(eps^2) error). On a quadratic
loss both approximations are exact.

Cost: four alpha-gradient evaluations (``difference="central"``), or three with
``difference="forward"``, ``h = (g(alpha_t + eps g1) - g1) / eps`` (O(eps) error).
``hessian="exact"`` computes the USAM-objective gradient itself by double backward (no eps,
about the cost of the difference pair); trust it over the paper form for large rho, where the
two diverge.

With ``adaptive=True`` the shift is ``rho T^2 g0`` and the difference is taken along ``T^2 g1``
(``T = |alpha| + eta`` held constant), which keeps A2M exact on quadratics.

``batch_pair=True`` evaluates the central difference's two points in one pass
(``torch.func.vmap`` over the stacked points, see
:meth:`~flatarch.evaluation.GradientOracle.evaluate_pair`): the same values, about half the
kernel launches for that pair, more work per launch. It needs a functional loss (e.g.
:func:`flatarch.module_loss`); measure it (``benchmarks/gpu_suite.py``) before using it: on a
CPU it is slower.
"""

from __future__ import annotations

from typing import Any

from . import defaults, tree
from .base import check_choice, check_eps
from .perturbation import direction_scale
from .perturbed import PerturbedUpdate
from .step_info import StepInfo


class A2M(PerturbedUpdate):
    """Architecture-Aware Minimization.

    Args (beyond :class:`flatarch.base.ArchUpdate`'s):
        rho: USAM radius (paper: 1e-2 on NAS-Bench-201, 1e-1 on the DARTS space).
        eps: finite-difference step, a fixed number, not divided by a norm (paper: 1e-2).
        hessian: ``"fd"`` (the paper's finite differences) or ``"exact"``.
        difference: ``"central"`` (the paper's, 4 evaluations) or ``"forward"`` (3).
        adaptive: ASAM-style elementwise scaling, see module docstring.
        batch_pair: evaluate the central difference's two points in one vmapped pass (see
            module docstring); how the step is computed, not what, so it is not a setting that
            ``state_dict`` records.
    """

    name = "a2m"
    normalize = False
    hessian_modes = ("fd", "exact")

    def __init__(
        self,
        params: Any,
        *,
        rho: float = defaults.RHO,
        eps: float = defaults.EPS,
        hessian: str = "fd",
        difference: str = "central",
        batch_pair: bool = False,
        **kwargs: Any,
    ):
        self.eps = check_eps(eps)
        self.difference = check_choice("difference", difference, ("central", "forward"))
        self.batch_pair = bool(batch_pair)
        if self.batch_pair and (hessian != "fd" or difference != "central"):
            raise ValueError("batch_pair=True pairs the two points of the central difference; it needs "
                             "hessian='fd' and difference='central'")
        if self.batch_pair and not kwargs.get("protect_buffers", True):
            raise ValueError("batch_pair=True runs the difference pair with the running statistics frozen (a vmapped "
                             "pass cannot update them); with protect_buffers=False every pass must update them: drop "
                             "one of the two")
        super().__init__(params, rho=rho, hessian=hessian, **kwargs)

    def hyperparameters(self) -> dict[str, Any]:
        hp = super().hyperparameters()
        if self.hessian == "fd":
            hp.update(eps=self.eps, difference=self.difference)
        return hp

    def _direction(self, oracle):
        if self.hessian == "exact":
            return self._exact_direction(oracle)
        scale = self._scale(oracle)
        loss0, g0, _ = oracle.evaluate(oracle.alpha, "alpha")
        alpha_t = tree.axpy(1.0, self._perturb(g0, scale), oracle.alpha)
        loss1, g1, _ = oracle.evaluate(alpha_t, "alpha_t = alpha + rho*g")
        v = direction_scale(g1, scale)
        plus = tree.axpy(self.eps, v, alpha_t)
        if self.difference == "forward":
            _, g_plus, _ = oracle.evaluate(plus, "alpha_t + eps*g1")
            h = tuple((p - g) / self.eps for p, g in zip(g_plus, g1))
        else:
            minus = tree.axpy(-self.eps, v, alpha_t)
            labels = ("alpha_t + eps*g1", "alpha_t - eps*g1")
            if self.batch_pair:
                (_, g_plus), (_, g_minus) = oracle.evaluate_pair(plus, minus, labels)
            else:
                _, g_plus, _ = oracle.evaluate(plus, labels[0])
                _, g_minus, _ = oracle.evaluate(minus, labels[1])
            h = tuple((p - m) / (2 * self.eps) for p, m in zip(g_plus, g_minus))
        direction = tree.axpy(self.rho, h, g1)
        return direction, StepInfo(loss0, loss1, tree.global_norm(g0), oracle.evaluations)
