"""A functional loss over the architecture tensors of an ``nn.Module``.

DARTS-style models keep their alphas as registered parameters, as buffers, or as plain tensor
attributes (the original DARTS and PC-DARTS code). :func:`module_loss` turns such a model, a
batch and the attribute paths of its alphas into ``loss(alpha) -> scalar`` that evaluates the
model *with the given alpha values swapped in*, leaving the model's own tensors untouched:

* registered parameters and buffers are swapped with ``torch.func.functional_call``;
* plain tensor attributes are set for the duration of the call and put back afterwards,
  also when the forward raises.

The result carries ``.arch_params`` (the live tensors, to build the update over) and
``.module`` (so the update keeps the BatchNorm statistics as the first pass left them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def _resolve(module: nn.Module, path: str) -> tuple[nn.Module, str, str]:
    """``(owner module, attribute, kind)`` for a dotted path; kind is parameter|buffer|attribute."""
    *owner_path, attr = path.split(".")
    owner = module
    for part in owner_path:
        if not hasattr(owner, part):
            raise AttributeError(f"module has no submodule {part!r} on the way to {path!r}")
        owner = getattr(owner, part)
    if not isinstance(owner, nn.Module):
        raise TypeError(f"{'.'.join(owner_path)!r} in {path!r} is not an nn.Module")
    if attr in owner._parameters:
        return owner, attr, "parameter"
    if attr in owner._buffers:
        return owner, attr, "buffer"
    if isinstance(getattr(owner, attr, None), torch.Tensor):
        return owner, attr, "attribute"
    raise AttributeError(
        f"{path!r} is not a parameter, buffer or tensor attribute of the module; "
        "pass the attribute paths of the architecture tensors, e.g. ['alphas_normal', 'alphas_reduce']"
    )


class ModuleLoss:
    """``loss(alpha) -> scalar``: the module's loss on one batch at the given architecture.

    Args:
        module: the model.
        batch: what ``compute`` receives; by default ``(inputs, targets)``.
        arch_names: attribute paths of the architecture tensors (``"alphas_normal"``,
            ``"cells.0.betas"``).
        criterion: ``criterion(module(inputs), targets)`` is the default loss (cross entropy).
        compute: ``compute(module, batch) -> scalar`` replaces the default, e.g. a model's own
            ``_loss`` or a loss plus a regulariser; inside it the module sees the swapped alphas.
    """

    def __init__(
        self,
        module: nn.Module,
        batch: Any,
        arch_names: Sequence[str],
        *,
        criterion: Callable[[Any, Any], torch.Tensor] = F.cross_entropy,
        compute: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    ):
        if isinstance(arch_names, str):
            arch_names = [arch_names]
        if not arch_names:
            raise ValueError("arch_names is empty: name the module's architecture tensors")
        self.module = module
        self.batch = batch
        self.names = list(arch_names)
        self.criterion = criterion
        self.compute = compute
        self._targets = {name: _resolve(module, name) for name in self.names}
        self._wrapper = _LossCall(self)

    @property
    def arch_params(self) -> dict[str, torch.Tensor]:
        """``{name: live tensor}``: build the update over this."""
        return {name: getattr(owner, attr) for name, (owner, attr, _) in self._targets.items()}

    def _forward(self, module: nn.Module) -> torch.Tensor:
        if self.compute is not None:
            return self.compute(module, self.batch)
        inputs, targets = self.batch
        return self.criterion(module(inputs), targets)

    def __call__(self, alpha: dict[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(alpha, dict) or set(alpha) != set(self.names):
            got = sorted(alpha) if isinstance(alpha, dict) else type(alpha).__name__
            raise ValueError(f"expected alpha as a dict with keys {sorted(self.names)}, got {got}")
        registered = {n: v for n, v in alpha.items() if self._targets[n][2] != "attribute"}
        plain = [(self._targets[n][0], self._targets[n][1], v) for n, v in alpha.items()
                 if self._targets[n][2] == "attribute"]
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in plain]
        try:
            for owner, attr, value in plain:
                object.__setattr__(owner, attr, value)
            if not registered:
                return self._forward(self.module)
            # functional_call swaps tensors for the duration of one module call; running the
            # whole loss inside the wrapper's call lets `compute` see the swapped tensors too.
            swapped = {f"inner.{name}": value for name, value in registered.items()}
            return functional_call(self._wrapper, swapped, (), tie_weights=False, strict=False)
        finally:
            for owner, attr, value in saved:
                object.__setattr__(owner, attr, value)


class _LossCall(nn.Module):
    def __init__(self, loss: ModuleLoss):
        super().__init__()
        self.inner = loss.module
        self._loss = [loss]  # a list, so the loss object is not registered as a submodule

    def forward(self) -> torch.Tensor:
        return self._loss[0]._forward(self.inner)


def module_loss(
    module: nn.Module,
    batch: Any,
    arch_names: Sequence[str],
    *,
    criterion: Callable[[Any, Any], torch.Tensor] = F.cross_entropy,
    compute: Callable[[nn.Module, Any], torch.Tensor] | None = None,
) -> ModuleLoss:
    """Build a :class:`ModuleLoss` (see there). Example::

        loss = flatarch.module_loss(model, (x_val, y_val), ["alphas_normal", "alphas_reduce"])
        opt = flatarch.A2M(loss.arch_params, rho=1e-1)   # once
        opt.step(loss)                                    # every iteration, with a new batch
    """
    return ModuleLoss(module, batch, arch_names, criterion=criterion, compute=compute)
