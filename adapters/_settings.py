"""The update knobs every adapter takes, checked when they are given, and the update built from them.

==================== =============================================================================
``arch_update``      ``"a2m"`` (default), ``"sam"``, ``"usam"`` or ``"first-order"`` (and the aliases
                     of :data:`flatarch.updates.ALIASES`)
``rho``              perturbation radius; by default the paper's value for the space the
                     architecture tensors look like (:func:`default_rho`)
``eps``              A2M's finite-difference step (the update's default, 1e-2)
``hessian``          the update's default (A2M ``"fd"``, SAM/USAM ``"none"``); ``"exact"`` for
                     the double-backward gradient of the perturbed objective
``difference``       A2M's ``"central"`` (4 evaluations, default) or ``"forward"`` (3)
==================== =============================================================================

``None`` means "the default" for each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flatarch import defaults
from flatarch.base import ArchUpdate
from flatarch.updates import canonical_update, make_update

#: the knob names, in the order the docs list them
KNOBS = ("arch_update", "rho", "eps", "hessian", "difference")


def default_rho(tensors: list[torch.Tensor]) -> float:
    """The paper's rho (appendix C.3) for the space the architecture tensors look like.

    One op-choice tensor (two or more dimensions: ``[edges, ops]``) is NAS-Bench-201's single
    alpha, 1e-2; anything else (``alphas_normal`` and ``alphas_reduce``) is the DARTS space, 1e-1.
    1-D tensors (PC-DARTS' or confopt's edge-normalisation betas) are not counted.
    """
    op_choice = [t for t in tensors if t.dim() >= 2]
    return defaults.RHO_BY_SPACE["nb201" if len(op_choice) == 1 else "darts"]


@dataclass(frozen=True)
class UpdateKnobs:
    """The knobs of the module docstring. Building one checks them all (``ValueError`` naming the
    bad one), so a wrong setting fails before any model or data is touched."""

    arch_update: str = "a2m"
    rho: float | None = None
    eps: float | None = None
    hessian: str | None = None
    difference: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.arch_update, str):
            raise ValueError(f"arch_update must be a name, got {self.arch_update!r}")
        try:
            canonical_update(self.arch_update)
        except ValueError:
            raise ValueError(
                f"arch_update={self.arch_update!r} is not a flatarch update; set arch_update to one of: "
                "a2m, sam, usam, first-order"
            ) from None
        # The update's own checks, run once on a stand-in tensor, so each knob is checked in one place.
        self.build([torch.zeros(2, 2, requires_grad=True)], optimizer=None, rho_default=defaults.RHO)

    @classmethod
    def read(cls, get: Any) -> UpdateKnobs:
        """From a lookup ``get(name, default)`` (an adapter's args/overrides reader)."""
        return cls(get("arch_update", "a2m"), *(get(name) for name in KNOBS[1:]))

    def build(
        self,
        params: list[torch.Tensor],
        *,
        optimizer: torch.optim.Optimizer | None,
        module: nn.Module | None = None,
        rho_default: float | None = None,
        **options: Any,
    ) -> ArchUpdate:
        """The update over ``params``, stepping ``optimizer`` (``None``: DARTS' Adam).

        ``rho_default`` replaces :func:`default_rho` when ``rho`` was not given; ``options`` go to
        the update (``protect_buffers``, ``same_randomness``, ...).
        """
        rho = self.rho if self.rho is not None else (rho_default if rho_default is not None else default_rho(params))
        settings = {"eps": self.eps, "hessian": self.hessian, "difference": self.difference}
        settings = {name: value for name, value in settings.items() if value is not None}
        return make_update(self.arch_update, params, optimizer=optimizer, module=module, rho=rho, **settings, **options)
