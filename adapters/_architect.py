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
``arch_update``, ``rho``, ``eps``, ``hessian``, ``difference``: see :mod:`flatarch.adapters._settings`
``process_group``      data parallelism: each gradient evaluation is the mean over this group's ranks
``grad_reduce``        or your own reduction (:mod:`flatarch.distributed`; docs/distributed.md)
==================== =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from flatarch.defaults import DARTS_ADAM_DEFAULTS
from flatarch.step_info import StepInfo

from ._settings import UpdateKnobs


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


def _listed(source: Any, where: str) -> list[Any]:
    if isinstance(source, torch.Tensor):
        return [source]
    if isinstance(source, (list, tuple, nn.ParameterList)):
        return list(source)
    raise TypeError(f"{where} is a {type(source).__name__}; expected a tensor or a list of tensors")


def arch_tensors(model: Any, arch_params: Any = None) -> list[torch.Tensor]:
    """The model's architecture tensors: ``arch_params`` when given, else ``model.arch_parameters``
    as the code bases define it: a method (DARTS and its descendants), a property returning a list
    (confopt's ``SearchSpace``), or an attribute holding a tensor or a list (confopt's NAS-Bench-201
    model keeps one ``nn.Parameter`` there)."""
    if arch_params is not None:
        tensors = _listed(arch_params, "arch_params")
        where = "arch_params"
    else:
        source = getattr(model, "arch_parameters", None)
        if source is None:
            raise TypeError(
                f"{type(model).__name__} has no arch_parameters (method, property or attribute); pass the alpha "
                "tensors as arch_params=[...]"
            )
        where = "arch_parameters"
        if callable(source) and not isinstance(source, (torch.Tensor, nn.Module)):
            source, where = source(), "arch_parameters()"
        tensors = _listed(source, f"{type(model).__name__}.{where}")
    if not tensors:
        raise ValueError(f"{type(model).__name__}.{where} holds no tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}[{i}] is a {type(t).__name__}, not a tensor")
        if not t.requires_grad or not t.is_leaf:
            raise ValueError(
                f"{where}[{i}] must be a leaf tensor that requires grad (as the originals build it: "
                "torch.randn(...).requires_grad_() or nn.Parameter)"
            )
    return tensors


def check_loss(model: Any) -> None:
    if not callable(getattr(model, "_loss", None)):
        raise TypeError(
            f"{type(model).__name__} has no _loss(input, target) method; give the search model one, or pass "
            "val_loss=lambda model, input, target: ... to flatarch.adapters.patch"
        )


class FlatArchitect:
    """Base of the drop-in ``Architect`` classes (see the module docstring for the knobs).

    Args:
        model: the search model: ``arch_parameters`` and ``_loss(input, target)``.
        args: the training script's argparse namespace (or a mapping, or ``None``).
        val_loss: ``val_loss(model, input, target) -> scalar`` replacing ``model._loss``.
        arch_params: the alpha tensors, for models without a usable ``arch_parameters``.
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
        arch_params: Any = None,
        **overrides: Any,
    ):
        if val_loss is not None and not callable(val_loss):
            raise TypeError(f"val_loss must be callable(model, input, target), got {type(val_loss).__name__}")
        arch = arch_tensors(model, arch_params)
        if val_loss is None:
            check_loss(model)
        knobs = Knobs(args, overrides)
        settings = UpdateKnobs.read(knobs.get)
        self.knobs = knobs
        self.model = model
        self.val_loss = val_loss
        self.network_momentum = float(knobs.get("momentum", 0.9))
        self.network_weight_decay = float(knobs.get("weight_decay", 3e-4))
        self.optimizer = torch.optim.Adam(
            arch,
            lr=float(knobs.get("arch_learning_rate", DARTS_ADAM_DEFAULTS["lr"])),
            betas=DARTS_ADAM_DEFAULTS["betas"],
            weight_decay=float(knobs.get("arch_weight_decay", DARTS_ADAM_DEFAULTS["weight_decay"])),
        )
        # The update steps the very Adam the original loop zeroes through architect.optimizer.
        parallel = {name: knobs.get(name) for name in ("process_group", "grad_reduce")}
        self.update = settings.build(arch, optimizer=self.optimizer, module=model, **parallel)
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
