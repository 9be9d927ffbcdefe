"""The one contract every architecture update implements.

The search engine, the adapters and user code depend on this protocol only, so any object
with these members -- flatarch's updates or your own -- drives a search.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from .step_info import StepInfo


@runtime_checkable
class ArchOptimizer(Protocol):
    """An optimizer for architecture parameters (alphas), shaped like ``torch.optim``.

    ``step(loss_fn)`` computes an update direction ``G`` from evaluations of ``loss_fn``,
    stores it in each parameter's ``.grad`` and steps the inner optimizer. Until that inner
    step, the parameters are bit for bit what they were.
    """

    #: the architecture parameters, in the pytree structure they were given in
    params: Any
    #: the inner ``torch.optim.Optimizer`` that applies ``G`` (use it with LR schedulers)
    optimizer: torch.optim.Optimizer

    def step(self, loss_fn: Callable[..., torch.Tensor], **kwargs: Any) -> StepInfo: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...
