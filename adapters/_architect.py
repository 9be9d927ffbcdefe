"""What the drop-in ``Architect`` classes share: reading the knobs, building the update, one step.

The original repositories' ``Architect(model, args)`` builds an Adam over
``model.arch_parameters()`` and, each iteration, back-propagates ``model._loss(x_val, y_val)``
into the alphas and steps that Adam. The drop-ins keep that Adam (``.optimizer``, same
instance) and replace the back-propagation by a flatarch update, which evaluates the loss in
the *closure* convention: it writes the (perturbed) alphas in place into the model's own
tensors, differentiates with respect to them only, restores them bit for bit, puts the
direction ``G`` into their ``.grad`` and calls ``.optimizer.step()``::

    alpha <- Adam(alpha, grad = G),   G = the update's direction at alpha

(``G = g(alpha)`` for first-order DARTS, ``g1 + rho * h`` for A2M, see :mod:`flatarch.a2m`).

Knobs are read from the user's ``args`` with ``getattr`` (their namespaces do not have the new
ones), keyword arguments override them, and ``None`` means "the default":

==================== =============================================================================
``arch_learning_rate`` Adam learning rate (3e-4)
``arch_weight_decay``  Adam weight decay (1e-3)
``momentum``           the weights' SGD momentum, kept as ``.network_momentum`` (0.9)
``weight_decay``       the weights' weight decay, kept as ``.network_weight_decay`` (3e-4)
``arch_update``        ``"a2m"`` (default), ``"sam"``, ``"usam"`` or ``"first-order"``
``rho``                perturbation radius; default by search space (paper appendix C.3): 1e-2 for
                       a model with a single alpha tensor (NAS-Bench-201), 1e-1 otherwise (DARTS space)
``eps``                A2M's finite-difference step (1e-2)
``hessian``            the update's default (A2M ``"fd"``, SAM/USAM ``"none"``); ``"exact"`` for
                       the double-backward gradient of the perturbed objective
``difference``         A2M's ``"central"`` (4 evaluations, default) or ``"forward"`` (3)
==================== =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

import flatarch
from flatarch.step_info import StepInfo

#: betas of the architecture Adam in all three original repositories
ARCH_ADAM_BETAS = (0.5, 0.999)

#: rho when neither ``args.rho`` nor a keyword gives one (paper appendix C.3)
RHO_NAS_BENCH_201 = 1e-2
RHO_DARTS_SPACE = 1e-1


class Knobs:
    """Settings looked up in keyword overrides, then in ``args`` (object or mapping), then defaults.

    ``None`` anywhere counts as "not given", so an argparse option declared with
    ``default=None`` falls back to the adapter's default.
    """

    def __init__(self, args: Any, overrides: Mapping[str, Any]):
        self.args = args
        self.overrides = dict(overrides)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.overrides.get(name)
        if value is None and self.args is not None:
            if isinstance(self.args, Mapping):
                value = self.args.get(name)
            else:
                value = getattr(self.args, name, None)
        return default if value is None else value


def check_model(model: Any, needs_loss: bool) -> list[torch.Tensor]:
    """The model's architecture tensors, after checking the interface the originals rely on."""
    arch_parameters = getattr(model, "arch_parameters", None)
    if not callable(arch_parameters):
        raise TypeError(
            f"{type(model).__name__} has no arch_parameters() method; the adapters need a DARTS-style search "
            "model whose arch_parameters() returns its alpha tensors"
        )
    if needs_loss and not callable(getattr(model, "_loss", None)):
        raise TypeError(
            f"{type(model).__name__} has no _loss(input, target) method; give the search model one, or pass "
            "val_loss=lambda model, input, target: ... to flatarch.adapters.patch"
        )
    tensors = list(arch_parameters())
    if not tensors:
        raise ValueError(f"{type(model).__name__}.arch_parameters() returned no tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"arch_parameters()[{i}] is a {type(t).__name__}, not a tensor")
        if not t.requires_grad or not t.is_leaf:
            raise ValueError(
                f"arch_parameters()[{i}] must be a leaf tensor that requires grad (as the originals build it: "
                "torch.randn(...).requires_grad_() or nn.Parameter)"
            )
    return tensors


def default_rho(arch: list[torch.Tensor]) -> float:
    """The paper's rho for the space the model looks like: one alpha tensor means NAS-Bench-201."""
    return RHO_NAS_BENCH_201 if len(arch) == 1 else RHO_DARTS_SPACE


class FlatArchitect:
    """Base of the drop-in ``Architect`` classes (see the module docstring for the knobs).

    Args:
        model: the search model: ``arch_parameters()`` and ``_loss(input, target)``.
        args: the training script's argparse namespace (or a mapping, or ``None``).
        val_loss: ``val_loss(model, input, target) -> scalar`` replacing ``model._loss``.
        **overrides: any knob, taking precedence over ``args``.

    Attributes:
        model, optimizer (the Adam the original builds; the update steps this instance),
        update (the :class:`flatarch.ArchUpdate`), network_momentum, network_weight_decay,
        last_info (the :class:`flatarch.StepInfo` of the latest step, or ``None``).
    """

    def __init__(
        self,
        model: nn.Module,
        args: Any = None,
        *,
        val_loss: Callable[[nn.Module, Any, Any], torch.Tensor] | None = None,
        **overrides: Any,
    ):
        if val_loss is not None and not callable(val_loss):
            raise TypeError(f"val_loss must be callable(model, input, target), got {type(val_loss).__name__}")
        arch = check_model(model, needs_loss=val_loss is None)
        knobs = Knobs(args, overrides)
        self.knobs = knobs
        self.model = model
        self.val_loss = val_loss
        self.network_momentum = float(knobs.get("momentum", 0.9))
        self.network_weight_decay = float(knobs.get("weight_decay", 3e-4))
        self.optimizer = torch.optim.Adam(
            arch,
            lr=float(knobs.get("arch_learning_rate", 3e-4)),
            betas=ARCH_ADAM_BETAS,
            weight_decay=float(knobs.get("arch_weight_decay", 1e-3)),
        )
        self.update_name = str(knobs.get("arch_update", "a2m"))
        update_kwargs: dict[str, Any] = {
            "rho": knobs.get("rho", default_rho(arch)),
            "eps": knobs.get("eps", 1e-2),
            "difference": knobs.get("difference", "central"),
        }
        if knobs.get("hessian") is not None:
            update_kwargs["hessian"] = knobs.get("hessian")
        if self.update_name.lower().replace("_", "-") not in (*flatarch.UPDATES, "firstorder", "darts", "fo"):
            raise ValueError(
                f"arch_update={self.update_name!r} is not a flatarch update; set args.arch_update (or the "
                f"arch_update keyword) to one of: {', '.join(flatarch.UPDATES)}"
            )
        # The update steps the very Adam the original loop zeroes through architect.optimizer.
        self.update = flatarch.make_update(
            self.update_name, arch, optimizer=self.optimizer, module=model, **update_kwargs
        )
        self.last_info: StepInfo | None = None

    # -- the loss ---------------------------------------------------------------------------
    def _val_loss(self, input_valid: Any, target_valid: Any) -> torch.Tensor:
        if self.val_loss is not None:
            return self.val_loss(self.model, input_valid, target_valid)
        return self.model._loss(input_valid, target_valid)

    def _objective(self, input_valid: Any, target_valid: Any) -> Callable[[], torch.Tensor]:
        """The closure the update evaluates at every (perturbed) alpha."""
        return lambda: self._val_loss(input_valid, target_valid)

    # -- the step ---------------------------------------------------------------------------
    def _check_unrolled(self, unrolled: Any) -> None:
        if not unrolled:
            return
        if self.update.name == "first-order":
            raise ValueError(
                "unrolled=True asks for second-order DARTS, which the flatarch adapters do not provide; run the "
                "search without --unrolled (first-order DARTS), or keep the repository's own Architect for the "
                "second-order step"
            )
        raise ValueError(
            f"unrolled=True asks for second-order DARTS, but arch_update={self.update.name!r} is a first-order "
            "update (it perturbs alpha and differentiates at fixed weights); run the search without --unrolled"
        )

    def _arch_step(self, input_valid: Any, target_valid: Any, unrolled: Any) -> StepInfo:
        self._check_unrolled(unrolled)
        self.optimizer.zero_grad()
        info = self.update.step(self._objective(input_valid, target_valid), convention="closure")
        self.last_info = info
        return info

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The update's state (the Adam state included), for checkpoints."""
        return self.update.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.update.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}({self.update!r})"
