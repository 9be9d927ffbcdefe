"""First-order DARTS: ``G = g(alpha)``, one gradient evaluation."""

from __future__ import annotations

from . import tree
from .base import ArchUpdate
from .step_info import StepInfo


class FirstOrder(ArchUpdate):
    """Plain first-order DARTS (Liu et al. 2019): the direction is the validation gradient.

    ``G = g(alpha)``; cost: one forward and one alpha-only backward.
    See :class:`flatarch.base.ArchUpdate` for the arguments.
    """

    name = "first-order"

    def _direction(self, oracle):
        loss, g, _ = oracle.evaluate(oracle.alpha, "alpha")
        return g, StepInfo(loss, loss, tree.global_norm(g), oracle.evaluations)
