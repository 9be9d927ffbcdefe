"""``patch``: an Architect-compatible object for codebases whose ``Architect`` lives elsewhere.

Any DARTS-derived code base with a search model exposing ``arch_parameters`` and
``_loss(input, target)`` can swap its architecture step without importing one of the
repository modules::

    from flatarch.adapters import patch
    architect = patch(model, args)                         # was: architect = Architect(model, args)
    architect = patch(model, args, style="beta-darts")     # the beta-DARTS objective and call shape
    architect = patch(model, arch_update="sam", rho=0.05)  # keywords instead of (or over) args
    architect = patch(search_space, val_loss=lambda m, x, y: F.cross_entropy(m(x)[1], y))  # confopt

The result has ``.model``, ``.optimizer`` (Adam over the architecture tensors) and the
original ``step`` signature of the chosen style.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import beta_darts, darts, darts_pt, pc_darts
from ._architect import FlatArchitect

#: ``style`` -> the Architect class with that repository's call shape
STYLES: dict[str, type[FlatArchitect]] = {
    "darts": darts.Architect,
    "pc-darts": pc_darts.Architect,
    "beta-darts": beta_darts.Architect,
    "darts-pt": darts_pt.Architect,
}


def patch(
    model: nn.Module,
    args: Any = None,
    /,
    *,
    style: str = "darts",
    val_loss: Callable[[nn.Module, Any, Any], torch.Tensor] | None = None,
    arch_params: Any = None,
    **knobs: Any,
) -> FlatArchitect:
    """Build a drop-in architect for ``model``.

    Args:
        model: the search model: ``arch_parameters`` (a method, a property or an attribute holding a
            tensor or a list of tensors) unless ``arch_params`` is given, and ``_loss(input, target)``
            unless ``val_loss`` is.
        args: the script's argparse namespace or a dict (optional); see
            :mod:`flatarch.adapters._architect` and :mod:`flatarch.adapters.beta_darts` for the knobs.
        style: ``"darts"`` (``step(..., eta, network_optimizer, unrolled)``), ``"pc-darts"`` (the same)
            ``"beta-darts"`` (``step(..., eta, network_optimizer, epoch, unrolled)`` and the beta-decay
            regulariser) or ``"darts-pt"`` (also ``return_logits=``; ``step`` returns ``None``).
        val_loss: ``val_loss(model, input, target) -> scalar``, for models whose loss method has
            another name or signature.
        arch_params: the alpha tensor(s), for a model whose ``arch_parameters`` is missing or
            holds something else.
        **knobs: any knob by name (``arch_update="sam"``, ``rho=0.05``, ``arch_learning_rate=6e-4``);
            they take precedence over ``args``.
    """
    key = style.lower().replace("_", "-")
    if key not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")
    return STYLES[key](model, args, val_loss=val_loss, arch_params=arch_params, **knobs)
